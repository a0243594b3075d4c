"""composite: the seed experiment's reward, 0.3 × compile + 0.7 × performance, with compile -1 or 0.

The experiment it reproduces trained a policy model with PPO on this reward. Its two terms, as defined here:
- compile: 0 when the code parsed, vetted and ran (the valid_code gate), else -1.
- performance: s / (1 + |s|) with s = validation Sharpe / 2 when every gate passed, else -1. Inside (-1, 1) (unlike
  tanh, which reaches -1.0 in floating point from a Sharpe of about -38), so no honest strategy, however bad, scores as
  low as a failure: with a raw Sharpe, code that fails to compile (-0.3) would beat
  any strategy with a Sharpe below -0.43, and a policy being trained learns to fail on purpose.
So invalid code scores -1, code that ran but failed a gate (look-ahead, non-finite equity, no trades) -0.7, and a
strategy that passed more than -0.7.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autotrade.evaluation.objectives.base import Measure
from autotrade.fmt import num

if TYPE_CHECKING:
    from autotrade.evaluation.evaluate import Evaluation

COMPILE_WEIGHT = 0.3
PERFORMANCE_WEIGHT = 0.7
SHARPE_SCALE = 2.0  # a validation Sharpe of 2 earns half the performance term


@dataclass(frozen=True)
class Composite:
    """0.3 × compile + 0.7 × performance; a candidate that ran but failed a gate scores at most -0.7."""

    name: str = "composite"
    gated: float = -PERFORMANCE_WEIGHT  # compiled (0) with no performance (-1); invalid code scores -1 by its terms
    own_column: bool = True
    weights: Mapping[str, float] | None = field(
        default_factory=lambda: {"compile": COMPILE_WEIGHT, "performance": PERFORMANCE_WEIGHT}
    )

    def describe(self, robust_k: int) -> str:
        """The prompt's sentence: both terms and what each failure scores."""
        return (
            "0.3 x compile + 0.7 x performance (higher is better): compile is 0 when the code runs and -1 when it "
            "does not; performance is s / (1 + |s|) with s = validation Sharpe / 2 when every check passes, else -1 "
            "(look-ahead, non-finite equity or no trades)"
        )

    def measure(self, evaluation: Evaluation, *, robust_k: int, periods: float) -> Measure:
        """Both terms (named compile and performance) and their weighted sum; NaN when an ok result has no Sharpe."""
        compiled = 0.0 if not evaluation.status.invalid_code else -1.0
        performance = -1.0
        if evaluation.ok:
            sharpe = evaluation.windows.get("val", {}).get("sharpe")
            scaled = float(sharpe) / SHARPE_SCALE if sharpe is not None else math.nan
            performance = scaled / (1.0 + abs(scaled))
        total = COMPILE_WEIGHT * compiled + PERFORMANCE_WEIGHT * performance
        return Measure({"compile": compiled, "performance": performance}, total)

    def format(self, value: float | None, missing: str = "—") -> str:
        """A score as a number."""
        return num(value, 3, missing)


OBJECTIVE = Composite()
