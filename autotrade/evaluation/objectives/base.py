"""The contract every objective meets, and the one shape most of them share: a single validation metric.

No numpy here (the registry and ``--help`` import this module); an objective that needs it imports it in its
own module, which loads only when a run or a score uses that objective.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from autotrade.fmt import num, pct

if TYPE_CHECKING:
    from autotrade.evaluation.evaluate import Evaluation


@dataclass(frozen=True)
class Measure:
    """An evaluation under one objective: the figures the total is read from, and the total (NaN when unknown)."""

    components: dict[str, float]
    total: float


class Objective(Protocol):
    """The figure the loop keeps the top K by; higher is always better."""

    name: str  # its key in OBJECTIVES
    # The most a candidate that fails a hard gate can score (its floor, where the objective has one), and the total
    # of a non-finite value: below every passing total.
    gated: float
    own_column: bool  # False when tables show it already (val_return is their val return column)
    # When the total is a weighted sum of its components (every gate passed): each one's weight; None otherwise.
    # A trainer's rubric (rl.environment) shows such components as separate weighted functions.
    weights: Mapping[str, float] | None

    def describe(self, robust_k: int) -> str:
        """One sentence for the prompt: what the model is judged on (``robust_k`` matters to robust only)."""
        ...

    def measure(self, evaluation: Evaluation, *, robust_k: int, periods: float) -> Measure:
        """Components and total of an evaluation; ``periods`` = bars per year for annualising."""
        ...

    def format(self, value: float | None, missing: str = "—") -> str:
        """A value as people and models read it; ``missing`` when absent or not finite."""
        ...


@dataclass(frozen=True)
class ValidationMetric:
    """An objective that is one engine metric of the validation window, unbounded (a failed gate gives -inf)."""

    name: str
    metric: str  # the engine's key in windows["val"]
    sentence: str  # what describe returns
    as_percent: bool = False  # a fraction shown as a signed percentage, else a number
    own_column: bool = True
    gated: float = -math.inf
    weights: Mapping[str, float] | None = None  # one figure, no sum

    def describe(self, robust_k: int) -> str:
        """The objective's sentence (it has no k)."""
        return self.sentence

    def measure(self, evaluation: Evaluation, *, robust_k: int, periods: float) -> Measure:
        """The metric, named after the objective; NaN when the evaluation has no validation metrics."""
        value = evaluation.windows.get("val", {}).get(self.metric)
        if value is None:
            return Measure({}, math.nan)
        return Measure({self.name: float(value)}, float(value))

    def format(self, value: float | None, missing: str = "—") -> str:
        """A signed percentage or a number."""
        return pct(value, missing=missing) if self.as_percent else num(value, 3, missing)
