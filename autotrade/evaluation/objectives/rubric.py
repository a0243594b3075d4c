"""rubric: the TradePool-style weighted score in [0, 1] of the validation window, with hard gates.

Its gates are every objective's gates (``score.score_evaluation``). Statuses are plain strings with the values of
``autotrade.status.Status`` (a StrEnum, so its members pass as is).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autotrade.evaluation.objectives.base import Measure
from autotrade.fmt import num
from autotrade.status import Status

if TYPE_CHECKING:
    from autotrade.evaluation.evaluate import Evaluation


STATUSES = frozenset(Status)
_INVALID_CODE = frozenset(s for s in Status if s.invalid_code)

# TradePool rubric weights (sum to 1).
RUBRIC_WEIGHTS: Mapping[str, float] = {
    "sharpe": 0.40,
    "beats_buy_and_hold": 0.20,
    "drawdown": 0.15,
    "exposure": 0.10,
    "costs": 0.05,
    "trades": 0.10,
}
SHARPE_FULL_MARKS = 2.0  # annualised validation Sharpe that earns the whole sharpe component
DRAWDOWN_ZERO_MARKS = 0.5  # a 50% drawdown (or worse) earns nothing
EXPOSURE_SANE = (0.2, 0.95)  # fraction of bars in the market that earns the whole exposure component
COSTS_ZERO_MARKS = 0.05  # costs of 5% of the starting capital (or more) earn nothing
TRADES_FULL_MARKS = 5  # validation trades that earn the whole trades component


@dataclass(frozen=True)
class RubricScore:
    """Weighted total in [0, 1], each component in [0, 1] (before weighting), each hard gate (True = passed)."""

    total: float
    components: dict[str, float]
    gates: dict[str, bool]


def rubric_score(val_metrics: Mapping[str, float], status: str = "ok") -> RubricScore:
    """TradePool-style score of the validation window: Σ weight × component, or 0 when any hard gate fails.

    Hard gates: valid_code (status not a parse/vet/run failure), no_lookahead (status != lookahead), finite_equity
    (status != nan_equity and final_equity finite), trades (status != no_trades and num_trades > 0).
    Components (each clipped to [0, 1], monotone; a missing or non-finite input scores 0):
    - sharpe (0.40): sharpe / 2 — annualised validation Sharpe 0 or less → 0, 2 or more → 1.
    - beats_buy_and_hold (0.20): (w − 0.5) / 0.5 with w = (1 + total_return) / (1 + buy_and_hold_return), the final
      wealth relative to buy-and-hold: matching or beating it → 1, half its final wealth or less → 0.
    - drawdown (0.15): 1 − |max_drawdown| / 0.5 — no drawdown → 1, 50% or deeper → 0.
    - exposure (0.10): 1 for exposure in [0.2, 0.95]; exposure / 0.2 below; (1 − exposure) / 0.05 above
      (always in the market is buy-and-hold in disguise → 0).
    - costs (0.05): 1 − (total_costs / starting capital) / 0.05, starting capital = final_equity / (1 + total_return) —
      no costs → 1, costs of 5% of the starting capital or more → 0.
    - trades (0.10): num_trades / 5 — five or more validation trades → 1.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown evaluation status {status!r}; expected one of {sorted(STATUSES)}")
    num_trades = _metric(val_metrics, "num_trades")
    final_equity = _metric(val_metrics, "final_equity")
    gates = {
        "valid_code": status not in _INVALID_CODE,
        "no_lookahead": status != "lookahead",
        "finite_equity": status != "nan_equity" and math.isfinite(final_equity),
        "trades": status != "no_trades" and num_trades > 0,
    }
    components = {
        "sharpe": _clip01(_metric(val_metrics, "sharpe") / SHARPE_FULL_MARKS),
        "beats_buy_and_hold": _beats_buy_and_hold(val_metrics),
        "drawdown": _clip01(1.0 - abs(_metric(val_metrics, "max_drawdown")) / DRAWDOWN_ZERO_MARKS),
        "exposure": _exposure(_metric(val_metrics, "exposure")),
        "costs": _costs(val_metrics),
        "trades": _clip01(num_trades / TRADES_FULL_MARKS),
    }
    if not all(gates.values()):
        return RubricScore(total=0.0, components=components, gates=gates)
    total = sum(RUBRIC_WEIGHTS[name] * value for name, value in components.items())
    return RubricScore(total=_clip01(total), components=components, gates=gates)


def _metric(metrics: Mapping[str, float], key: str) -> float:
    """A metric as float; NaN when missing (failed evaluations carry no metrics), so it scores 0."""
    value = metrics.get(key)
    return math.nan if value is None else float(value)


def _clip01(x: float) -> float:
    """x clipped to [0, 1]; NaN → 0."""
    return min(max(x, 0.0), 1.0) if not math.isnan(x) else 0.0


def _beats_buy_and_hold(m: Mapping[str, float]) -> float:
    """Final wealth relative to buy-and-hold's, mapped from [0.5, 1] onto [0, 1]."""
    strategy_wealth = 1.0 + _metric(m, "total_return")
    bh_wealth = 1.0 + _metric(m, "buy_and_hold_return")
    if not (math.isfinite(strategy_wealth) and math.isfinite(bh_wealth)):
        return 0.0
    if bh_wealth <= 0.0:  # buy-and-hold lost everything: anything not worse beats it
        return 1.0 if strategy_wealth >= bh_wealth else 0.0
    return _clip01((strategy_wealth / bh_wealth - 0.5) / 0.5)


def _exposure(exposure: float) -> float:
    """1 inside the sane band, falling linearly to 0 at exposure 0 and at exposure 1."""
    low, high = EXPOSURE_SANE
    if math.isnan(exposure):
        return 0.0
    if exposure < low:
        return _clip01(exposure / low)
    if exposure > high:
        return _clip01((1.0 - exposure) / (1.0 - high))
    return 1.0


def _costs(m: Mapping[str, float]) -> float:
    """1 − costs as a share of the starting capital / 5%."""
    growth = 1.0 + _metric(m, "total_return")
    final_equity = _metric(m, "final_equity")
    total_costs = _metric(m, "total_costs")
    if not (growth > 0.0 and final_equity > 0.0 and math.isfinite(final_equity)):
        return 0.0  # wiped out (or unknown): the starting capital cannot be recovered
    return _clip01(1.0 - (total_costs / (final_equity / growth)) / COSTS_ZERO_MARKS)


@dataclass(frozen=True)
class Rubric:
    """The rubric's components and total; bounded, so a failed gate scores its floor, 0."""

    name: str = "rubric"
    gated: float = 0.0
    own_column: bool = True
    weights: Mapping[str, float] | None = field(default_factory=lambda: RUBRIC_WEIGHTS)

    def describe(self, robust_k: int) -> str:
        """The prompt's sentence: the weights, where each component earns full marks, and the gates."""
        return (
            "a score in [0, 1] on the validation window (higher is better): Sharpe 40% (full marks at 2), "
            "beating buy-and-hold 20%, drawdown control 15% (nothing at -50%), sane exposure 10% (20% to 95% of bars "
            "in the market), low transaction costs 5%, actually trading 10% (full marks at 5 trades); "
            "0 for invalid code, look-ahead, non-finite equity or no trades"
        )

    def measure(self, evaluation: Evaluation, *, robust_k: int, periods: float) -> Measure:
        """``rubric_score`` of the validation window under the evaluation's status."""
        score = rubric_score(evaluation.windows.get("val", {}), str(evaluation.status))
        return Measure(dict(score.components), score.total)

    def format(self, value: float | None, missing: str = "—") -> str:
        """A score as a number."""
        return num(value, 3, missing)


OBJECTIVE = Rubric()
