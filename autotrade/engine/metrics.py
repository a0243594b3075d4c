"""Performance metrics computed from plain arrays; each docstring pins its convention.

Nothing here simulates: `autotrade.engine.backtest` produces the equity curve and the trades, and
`compute_metrics` turns them into the per-window numbers the harness reports and ranks by.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

METRIC_KEYS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "num_trades",
    "win_rate",
    "exposure",
    "turnover",
    "total_costs",
    "final_equity",
    "buy_and_hold_return",
    "buy_and_hold_sharpe",
    "bars",
)

# Rounding noise on a flat or constant-return curve must not turn into an enormous ratio.
_TINY = 1e-12
_DAY_NS = 86_400 * 10**9
_YEAR_DAYS = 365.25


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year for annualising: 252 daily equities, 365 daily with weekends, else observed.

    Daily means a median bar spacing of about one day (0.5 to 1.5 days). Daily data counts as
    having weekends when at least 10% of bars fall on Saturday or Sunday (crypto has 2/7), so a
    stray weekend row in equity data does not switch the convention. Intraday and coarser bars
    (hourly, weekly, monthly) use the observed density, bar intervals per 365.25 days, which is
    right for 24/7 crypto, 24/5 FX and 6.5-hour equity sessions alike. Fewer than two bars: 252.
    """
    if len(index) < 2:
        return 252.0
    stamps = _nanoseconds(index)
    spacing_days = float(np.median(np.diff(stamps))) / _DAY_NS
    if 0.5 <= spacing_days < 1.5:
        weekend_share = float(np.mean(index.day_of_week >= 5))
        return 365.0 if weekend_share >= 0.1 else 252.0
    span_days = (stamps[-1] - stamps[0]) / _DAY_NS
    return (len(index) - 1) * _YEAR_DAYS / span_days


def _nanoseconds(index: pd.DatetimeIndex) -> np.ndarray:
    """Timestamps as int64 nanoseconds (pandas 3 indexes may be in s, ms or us)."""
    return index.as_unit("ns").asi8


def bar_returns(equity: np.ndarray) -> np.ndarray:
    """Per-bar simple returns (fractions), pandas `pct_change()` without its leading NaN."""
    return equity[1:] / equity[:-1] - 1.0


def sharpe_ratio(returns: np.ndarray, periods: float) -> float:
    """Annualised Sharpe: mean / sample std (ddof=1) of per-bar returns × √periods, risk-free 0.

    Arithmetic mean, as the original harness (pandas `mean()/std()`). Fewer than two returns or
    zero spread gives 0: a ratio is not defined there, and 0 never flatters a strategy.
    """
    if returns.size < 2:
        return 0.0
    std = float(np.std(returns, ddof=1))
    if not std > _TINY:
        return 0.0
    return float(np.mean(returns)) / std * math.sqrt(periods)


def sortino_ratio(returns: np.ndarray, periods: float) -> float:
    """Annualised Sortino: mean per-bar return / downside deviation × √periods, target 0.

    Downside deviation = sqrt(mean(min(r, 0)²)) over all bars (not only losing ones). No losing
    bar gives 0 rather than infinity, so a curve with too little data never ranks first on it.
    """
    if returns.size < 2:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if not downside > _TINY:
        return 0.0
    return float(np.mean(returns)) / downside * math.sqrt(periods)


def max_drawdown(equity: np.ndarray, start: float) -> float:
    """Deepest fall from a running peak, as a negative fraction (0 when never below a peak).

    The starting cash counts as the first peak, so an entry cost on the first bar is a drawdown.
    """
    peaks = np.maximum.accumulate(np.concatenate(([start], equity)))[1:]
    return min(0.0, float(np.min(equity / peaks - 1.0)))


def cagr(total_return: float, years: float) -> float:
    """Compound annual growth rate (fraction per year) of a total return over `years` years.

    0 for a window with no calendar span; -1 when everything was lost.
    """
    if years <= 0:
        return 0.0
    growth = 1.0 + total_return
    if growth <= 0:
        return -1.0
    return growth ** (1.0 / years) - 1.0


def calmar_ratio(cagr_value: float, drawdown: float) -> float:
    """CAGR / |max drawdown|; 0 without a drawdown (undefined, and 0 never flatters)."""
    if not -drawdown > _TINY:
        return 0.0
    return cagr_value / -drawdown


def compute_metrics(
    *,
    index: pd.DatetimeIndex,
    equity: np.ndarray,
    position: np.ndarray,
    trade_returns: np.ndarray,
    costs: float,
    traded_notional: float,
    cash: float,
    buy_and_hold_equity: np.ndarray,
) -> dict[str, float]:
    """All window metrics (keys in METRIC_KEYS, floats) from one simulated window.

    equity: currency per bar (after that bar's fills); position: 1.0 in the market at that
    bar's close else 0.0; trade_returns: net return (fraction) of each round trip, an open
    one closed at the last close; costs and traded_notional: currency, both sides summed.
    Years for CAGR and turnover are the window's calendar span / 365.25 days.
    """
    periods = periods_per_year(index)
    stamps = _nanoseconds(index)
    span_ns = int(stamps[-1] - stamps[0])
    years = span_ns / _DAY_NS / _YEAR_DAYS
    final = float(equity[-1])
    total = final / cash - 1.0
    growth = cagr(total, years)
    drawdown = max_drawdown(equity, cash)
    bh_final = float(buy_and_hold_equity[-1])
    return {
        "total_return": total,
        "cagr": growth,
        "sharpe": sharpe_ratio(bar_returns(equity), periods),
        "sortino": sortino_ratio(bar_returns(equity), periods),
        "max_drawdown": drawdown,
        "calmar": calmar_ratio(growth, drawdown),
        "num_trades": float(trade_returns.size),
        "win_rate": float(np.mean(trade_returns > 0)) if trade_returns.size else 0.0,
        "exposure": float(np.mean(position)),
        # Two-sided and per year: buying and selling the whole book once a year is 2.0.
        "turnover": traded_notional / float(np.mean(equity)) / years if years > 0 else 0.0,
        "total_costs": costs,
        "final_equity": final,
        "buy_and_hold_return": bh_final / cash - 1.0,
        "buy_and_hold_sharpe": sharpe_ratio(bar_returns(buy_and_hold_equity), periods),
        "bars": float(len(equity)),
    }
