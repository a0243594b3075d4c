"""The trusted long-or-flat backtester: one window, one signal per bar, vectorised with numpy.

Rules (those of the original harness, plus honest fills and costs):
- signal 1 goes long with all cash (fractional shares) when flat, -1 goes flat when long, 0 holds;
- `next-open` fills a signal seen at bar t's close at bar t+1's open (a signal on the last bar
  never trades); `close` fills at the same bar's close, as the original harness did;
- each side pays `cost_bps` of its traded notional (commission plus slippage);
- a position still open at the window's end is sold at the last close, paying the exit cost,
  and counts as a closed round trip (the original counted it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from autotrade.contract import SIGNALS
from autotrade.engine.metrics import compute_metrics, periods_per_year
from autotrade.errors import ConfigError

__all__ = ["BacktestSettings", "Fill", "WindowResult", "desired_state", "periods_per_year", "run_window"]


class Fill(StrEnum):
    """When a signal trades."""

    NEXT_OPEN = "next-open"  # bar t+1's open: the fill price was not known when the signal was made
    CLOSE = "close"  # bar t's own close: the original harness, optimistic but seed-compatible


@dataclass(frozen=True)
class BacktestSettings:
    """How fills happen and what they cost."""

    fill: Fill = Fill.NEXT_OPEN
    cost_bps: float = 2.0  # per side, on traded notional (1 bp = 0.01%)
    cash: float = 10_000.0  # starting cash of every window, currency

    def __post_init__(self) -> None:
        # A negative cost pays the strategy for trading and NaN poisons every number: refuse both here,
        # where every path (CLI, loop, report, a run's saved settings) builds its settings.
        if not (math.isfinite(self.cost_bps) and 0.0 <= self.cost_bps < 10_000.0):
            raise ConfigError(f"cost_bps must be a number from 0 to below 10000 basis points, got {self.cost_bps!r}")
        if not (math.isfinite(self.cash) and self.cash > 0.0):
            raise ConfigError(f"cash must be a positive finite amount, got {self.cash!r}")


@dataclass(frozen=True)
class WindowResult:
    """One simulated window: its metrics (see metrics.METRIC_KEYS) and per-bar curves."""

    metrics: dict[str, float]
    equity: pd.Series  # currency after each bar's fills, marked at that bar's close
    position: pd.Series  # 1.0 while in the market at that bar's close, else 0.0


@dataclass(frozen=True)
class _Simulation:
    equity: np.ndarray  # currency per bar
    trade_returns: np.ndarray  # net return (fraction) per round trip
    costs: float  # currency, both sides
    traded_notional: float  # currency, both sides


def desired_state(signals: np.ndarray) -> np.ndarray:
    """1.0 where the last non-zero signal up to each bar is a buy, else 0.0.

    This is the whole long-or-flat state machine: a buy while long and a sell while flat change
    nothing, so the state is the forward-filled last non-zero signal (flat before any).
    """
    bars = np.arange(signals.size)
    last_nonzero = np.maximum.accumulate(np.where(signals != 0, bars, 0))
    return (signals[last_nonzero] > 0).astype(float)


def _simulate(position: np.ndarray, fill_price: np.ndarray, close: np.ndarray, cost: float, cash: float) -> _Simulation:
    """Equity for a 0/1 position path that changes at `fill_price` on the bar it changes."""
    held_before = np.concatenate(([0.0], position[:-1]))
    entries = np.flatnonzero((position == 1) & (held_before == 0))
    exits = np.flatnonzero((position == 0) & (held_before == 1))
    if entries.size == 0:
        return _Simulation(np.full(position.size, cash), np.empty(0), 0.0, 0.0)
    entry_price = fill_price[entries]
    exit_price = fill_price[exits]
    open_at_end = exits.size < entries.size
    if open_at_end:
        exit_price = np.append(exit_price, close[-1])

    # Each round trip multiplies the cash; chaining them avoids a loop over trades.
    multiplier = exit_price / entry_price * (1.0 - cost) / (1.0 + cost)
    cash_after = cash * np.cumprod(multiplier)
    cash_before = np.concatenate(([cash], cash_after[:-1]))
    shares = cash_before / (entry_price * (1.0 + cost))  # all-in: cash covers notional plus fee

    # The latest round trip started at or before each bar; while held, equity is its shares at
    # the close, once flat again it is that trip's proceeds (or the starting cash before any).
    trip = np.cumsum((position == 1) & (held_before == 0)) - 1
    safe = np.maximum(trip, 0)
    flat_cash = np.where(trip >= 0, cash_after[safe], cash)
    equity = np.where(position == 1, shares[safe] * close, flat_cash)
    if open_at_end:
        equity[-1] = cash_after[-1]  # sold at the last close, exit cost paid

    notional = shares * entry_price + shares * exit_price
    return _Simulation(equity, multiplier - 1.0, float(np.sum(notional) * cost), float(np.sum(notional)))


def run_window(prices: pd.DataFrame, signals: np.ndarray, settings: BacktestSettings) -> WindowResult:
    """Simulate one window from flat with fresh cash; `signals` is one float in {-1, 0, 1} per row."""
    signals = np.asarray(signals, dtype=float)
    if signals.shape != (len(prices),):
        raise ValueError(f"signals have shape {signals.shape}, the window has {len(prices)} bars")
    if len(prices) == 0:
        raise ValueError("cannot backtest an empty window")
    if not np.isin(signals, tuple(SIGNALS)).all():
        raise ValueError("signals must be -1, 0 or 1 (map NaN to 0 before the engine)")

    close = prices["Close"].to_numpy(dtype=float)
    state = desired_state(signals)
    hold_all = np.ones(len(prices))
    if Fill(settings.fill) is Fill.CLOSE:
        fill_price = close
        position = state
    else:
        fill_price = prices["Open"].to_numpy(dtype=float)
        position = np.concatenate(([0.0], state[:-1]))  # the last bar's signal has no bar to fill on
        hold_all[0] = 0.0
    cost = settings.cost_bps / 10_000.0

    sim = _simulate(position, fill_price, close, cost, settings.cash)
    buy_and_hold = _simulate(hold_all, fill_price, close, cost, settings.cash)
    metrics = compute_metrics(
        index=prices.index,
        equity=sim.equity,
        position=position,
        trade_returns=sim.trade_returns,
        costs=sim.costs,
        traded_notional=sim.traded_notional,
        cash=settings.cash,
        buy_and_hold_equity=buy_and_hold.equity,
    )
    return WindowResult(
        metrics=metrics,
        equity=pd.Series(sim.equity, index=prices.index, name="equity"),
        position=pd.Series(position, index=prices.index, name="position"),
    )
