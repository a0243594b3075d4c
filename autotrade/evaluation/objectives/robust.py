"""robust: the worst annualised Sharpe over k consecutive sub-windows of train + validation (regime robustness)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from autotrade.engine.metrics import bar_returns, sharpe_ratio
from autotrade.evaluation.evaluate import RESEARCH_WINDOWS, Evaluation
from autotrade.evaluation.objectives import DEFAULT_ROBUST_K
from autotrade.evaluation.objectives.base import Measure
from autotrade.fmt import num


@dataclass(frozen=True)
class Robust:
    """Each sub-window's Sharpe are the components (sharpe_1 … sharpe_k, in time order); the total is their minimum."""

    name: str = "robust"
    gated: float = -math.inf
    own_column: bool = True
    weights: Mapping[str, float] | None = None  # the minimum of its components, not a sum

    def describe(self, robust_k: int) -> str:
        """The prompt's sentence, naming k."""
        return (
            f"the worst annualised Sharpe ratio over {robust_k} consecutive, equal sub-windows spanning train and "
            "validation (a strategy must work in more than one market regime; higher is better)"
        )

    def measure(self, evaluation: Evaluation, *, robust_k: int, periods: float) -> Measure:
        """Sub-window Sharpes of an ok evaluation's equity curves; no components when it has too few bars."""
        if not evaluation.ok or not all(name in evaluation.curves for name in RESEARCH_WINDOWS):
            return Measure({}, math.nan)
        returns = concat_bar_returns([evaluation.curves[name].equity.to_numpy() for name in RESEARCH_WINDOWS])
        try:
            sharpes = sub_window_sharpes(returns, robust_k, periods)
        except ValueError:
            return Measure({}, math.nan)
        return Measure({f"sharpe_{i}": value for i, value in enumerate(sharpes, start=1)}, min(sharpes))

    def format(self, value: float | None, missing: str = "—") -> str:
        """A Sharpe ratio as a number."""
        return num(value, 3, missing)


OBJECTIVE = Robust()


def robust_sharpe(daily_returns: np.ndarray, k: int = DEFAULT_ROBUST_K, periods_per_year: float = 252.0) -> float:
    """Worst annualised Sharpe over ``k`` consecutive, near-equal sub-windows (see ``sub_window_sharpes``)."""
    return min(sub_window_sharpes(daily_returns, k, periods_per_year))


def sub_window_sharpes(
    daily_returns: np.ndarray, k: int = DEFAULT_ROBUST_K, periods_per_year: float = 252.0
) -> list[float]:
    """Annualised Sharpe of each of ``k`` consecutive, near-equal sub-windows (sizes differ by at most one bar).

    ``daily_returns``: 1-D per-bar simple returns of the strategy over train then validation, in time order, i.e. the
    concatenation of each window's ``equity.pct_change()``; NaNs (each window's first bar) are dropped. Sharpe per
    sub-window is the engine's (``metrics.sharpe_ratio``: mean / std(ddof=1) × √periods_per_year); a sub-window with
    no variation (never in the market) scores 0.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    r = np.asarray(daily_returns, dtype=float).ravel()
    r = r[~np.isnan(r)]
    if not np.all(np.isfinite(r)):
        raise ValueError("daily_returns contain infinite values")
    if r.size < 2 * k:
        raise ValueError(f"robust objective with k={k} needs at least {2 * k} returns, got {r.size}")
    return [float(sharpe_ratio(part, periods_per_year)) for part in np.array_split(r, k)]


def concat_bar_returns(equity_curves: Sequence[np.ndarray]) -> np.ndarray:
    """Per-bar simple returns of each window's equity curve (currency), concatenated in order: robust's input.

    Each window starts with fresh cash, so no return spans a window boundary; pass train's curve, then validation's
    (e.g. ``[curves["train"].equity.to_numpy(), curves["val"].equity.to_numpy()]``).
    """
    return np.concatenate([bar_returns(np.asarray(curve, dtype=float)) for curve in equity_curves])
