"""The engine on hand-computed 5-bar series, against a per-row oracle, and on the seed baseline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from autotrade.candidate import baseline_source, extract_block
from autotrade.engine.backtest import BacktestSettings, Fill, run_window
from autotrade.engine.metrics import METRIC_KEYS
from autotrade.sandbox.execute import compute_features_and_signals, exec_block

CASH = 10_000.0
NO_COST_OPEN = BacktestSettings(fill=Fill.NEXT_OPEN, cost_bps=0.0)
NO_COST_CLOSE = BacktestSettings(fill=Fill.CLOSE, cost_bps=0.0)


@pytest.fixture
def bars() -> pd.DataFrame:
    """Five weekday bars whose opens differ from the previous close, so fill timing shows."""
    index = pd.DatetimeIndex(pd.bdate_range("2024-01-01", periods=5), name="Date")
    return pd.DataFrame(
        {
            "Open": [100.0, 105.0, 115.0, 120.0, 105.0],
            "High": [102.0, 111.0, 122.0, 121.0, 106.0],
            "Low": [99.0, 104.0, 114.0, 109.0, 99.0],
            "Close": [100.0, 110.0, 121.0, 110.0, 100.0],
            "Volume": [1e6] * 5,
        },
        index=index,
    )


def signals(*values: float) -> np.ndarray:
    return np.array(values, dtype=float)


def test_fill_happens_on_bar_after_signal(bars: pd.DataFrame) -> None:
    result = run_window(bars, signals(1, 0, -1, 0, 0), NO_COST_OPEN)
    shares = CASH / 105.0  # bought at bar 1's open, sold at bar 3's open
    assert result.position.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert result.equity.tolist() == pytest.approx([CASH, shares * 110, shares * 121, shares * 120, shares * 120])
    assert result.metrics["total_return"] == pytest.approx(120 / 105 - 1)


def test_close_fill_trades_on_signal_bar(bars: pd.DataFrame) -> None:
    result = run_window(bars, signals(1, 0, -1, 0, 0), NO_COST_CLOSE)
    assert result.position.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert result.equity.tolist() == pytest.approx([CASH, 11_000, 12_100, 12_100, 12_100])
    assert result.metrics["total_return"] == pytest.approx(0.21)


def test_signal_on_last_bar_does_not_trade(bars: pd.DataFrame) -> None:
    result = run_window(bars, signals(0, 0, 0, 0, 1), BacktestSettings())
    assert result.metrics["num_trades"] == 0
    assert result.metrics["total_costs"] == 0
    assert result.equity.tolist() == [CASH] * 5


def test_buy_while_long_and_sell_while_flat_change_nothing(bars: pd.DataFrame) -> None:
    result = run_window(bars, signals(-1, 1, 1, -1, -1), NO_COST_CLOSE)
    assert result.position.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert result.metrics["num_trades"] == 1
    assert result.metrics["total_return"] == pytest.approx(0.0)  # bought and sold at 110


def test_costs_are_charged_per_side_on_traded_notional(bars: pd.DataFrame) -> None:
    result = run_window(bars, signals(1, 0, -1, 0, 0), BacktestSettings(cost_bps=10.0))
    shares = CASH / (105.0 * 1.001)  # all cash covers the notional plus its fee
    entry_fee, exit_fee = shares * 105.0 * 0.001, shares * 120.0 * 0.001
    assert result.metrics["total_costs"] == pytest.approx(entry_fee + exit_fee)
    assert result.metrics["final_equity"] == pytest.approx(shares * 120.0 - exit_fee)


def test_open_position_at_end_is_sold_at_last_close_and_counted(bars: pd.DataFrame) -> None:
    result = run_window(bars, signals(0, 1, 0, 0, 0), BacktestSettings(cost_bps=10.0))
    shares = CASH / (115.0 * 1.001)  # bought at bar 2's open
    assert result.metrics["num_trades"] == 1
    assert result.position.iloc[-1] == 1.0
    assert result.metrics["final_equity"] == pytest.approx(shares * 100.0 * 0.999)
    assert result.equity.iloc[-1] == pytest.approx(result.metrics["final_equity"])


def test_buy_and_hold_equals_price_ratio_less_costs(bars: pd.DataFrame) -> None:
    cost = 0.0005
    next_open = run_window(bars, signals(0, 0, 0, 0, 0), BacktestSettings(cost_bps=5.0))
    close = run_window(bars, signals(0, 0, 0, 0, 0), BacktestSettings(fill=Fill.CLOSE, cost_bps=5.0))
    # First possible fill: bar 1's open (next-open) or bar 0's close (close); marked at the last close.
    assert next_open.metrics["buy_and_hold_return"] == pytest.approx(100 / 105 * (1 - cost) / (1 + cost) - 1)
    assert close.metrics["buy_and_hold_return"] == pytest.approx(100 / 100 * (1 - cost) / (1 + cost) - 1)


def test_always_long_strategy_matches_buy_and_hold(bars: pd.DataFrame) -> None:
    metrics = run_window(bars, signals(1, 1, 1, 1, 1), BacktestSettings()).metrics
    assert metrics["total_return"] == pytest.approx(metrics["buy_and_hold_return"])
    assert metrics["sharpe"] == pytest.approx(metrics["buy_and_hold_sharpe"])


def test_exposure_is_share_of_bars_in_market(bars: pd.DataFrame) -> None:
    assert run_window(bars, signals(1, 0, -1, 0, 0), BacktestSettings()).metrics["exposure"] == pytest.approx(2 / 5)


def test_turnover_is_two_sided_notional_over_mean_equity_per_year(bars: pd.DataFrame) -> None:
    result = run_window(bars, signals(1, 0, -1, 0, 0), NO_COST_OPEN)
    shares = CASH / 105.0
    years = 4 / 365.25  # Monday to Friday
    expected = (shares * 105 + shares * 120) / result.equity.mean() / years
    assert result.metrics["turnover"] == pytest.approx(expected)


def test_win_rate_counts_round_trips_profitable_after_costs(bars: pd.DataFrame) -> None:
    # Trip 1: 100 -> 110 at the close (wins); trip 2: 121 -> 100 at the last close (loses).
    metrics = run_window(bars, signals(1, -1, 1, 0, 0), BacktestSettings(fill=Fill.CLOSE)).metrics
    assert metrics["num_trades"] == 2
    assert metrics["win_rate"] == pytest.approx(0.5)


def test_strategy_that_never_trades_has_defined_zero_metrics(bars: pd.DataFrame) -> None:
    metrics = run_window(bars, signals(0, -1, 0, 0, 0), BacktestSettings()).metrics
    for key in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "num_trades", "win_rate"):
        assert metrics[key] == 0.0, key
    assert all(math.isfinite(value) for value in metrics.values())


def test_metrics_hold_exactly_the_contract_keys_as_floats(bars: pd.DataFrame) -> None:
    metrics = run_window(bars, signals(1, 0, -1, 0, 0), BacktestSettings()).metrics
    assert tuple(metrics) == METRIC_KEYS
    assert all(type(value) is float for value in metrics.values())


def test_curves_are_series_on_the_window_index(bars: pd.DataFrame) -> None:
    result = run_window(bars, signals(1, 0, -1, 0, 0), BacktestSettings())
    assert result.equity.index.equals(bars.index)
    assert result.position.index.equals(bars.index)


def test_fill_given_as_text_behaves_as_the_enum(bars: pd.DataFrame) -> None:
    as_text = run_window(bars, signals(1, 0, -1, 0, 0), BacktestSettings(fill="close"))  # type: ignore[arg-type]
    assert as_text.metrics == run_window(bars, signals(1, 0, -1, 0, 0), BacktestSettings(fill=Fill.CLOSE)).metrics


@pytest.mark.parametrize("bad", [[1, 0, 0.5, 0, 0], [1, 0, np.nan, 0, 0], [2, 0, 0, 0, 0]])
def test_signals_outside_minus_one_zero_one_are_rejected(bars: pd.DataFrame, bad: list[float]) -> None:
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        run_window(bars, np.array(bad, dtype=float), BacktestSettings())


def test_signals_of_wrong_length_are_rejected(bars: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="5 bars"):
        run_window(bars, signals(1, 0, 0, 0), BacktestSettings())


def per_row_equity(prices: pd.DataFrame, sig: np.ndarray, fill: Fill, cost: float) -> list[float]:
    """Oracle: the rules written as a plain loop over bars."""
    opens, closes = prices["Open"].to_numpy(), prices["Close"].to_numpy()
    cash, shares, pending, equity = CASH, 0.0, 0.0, []
    for t in range(len(prices)):
        order, price = (pending, opens[t]) if fill is Fill.NEXT_OPEN else (sig[t], closes[t])
        if order == 1 and shares == 0:
            shares, cash = cash / (price * (1 + cost)), 0.0
        elif order == -1 and shares > 0:
            shares, cash = 0.0, shares * price * (1 - cost)
        pending = sig[t]
        equity.append(cash + shares * closes[t])
    if shares > 0:
        equity[-1] = shares * closes[-1] * (1 - cost)
    return equity


@pytest.mark.parametrize("fill", list(Fill))
def test_engine_matches_per_row_loop_on_random_signals(sp500: pd.DataFrame, fill: Fill) -> None:
    prices = sp500.iloc[:400]
    sig = np.random.default_rng(7).choice([-1.0, 0.0, 0.0, 0.0, 1.0], size=len(prices))
    result = run_window(prices, sig, BacktestSettings(fill=fill, cost_bps=5.0))
    assert result.equity.to_numpy() == pytest.approx(per_row_equity(prices, sig, fill, 0.0005), rel=1e-12)


def baseline_signals(frame: pd.DataFrame) -> np.ndarray:
    """The bundled baseline block's signals, features computed on the whole frame, in-process."""
    block = extract_block(baseline_source())
    return compute_features_and_signals(exec_block(block), frame, block)[1]


def test_seed_baseline_reproduces_original_harness(sp500: pd.DataFrame) -> None:
    assert len(sp500) == 5031
    metrics = run_window(sp500, baseline_signals(sp500), BacktestSettings(fill=Fill.CLOSE, cost_bps=0.0)).metrics
    assert metrics["total_return"] == pytest.approx(0.381912604536292, abs=1e-9)
    assert metrics["sharpe"] == pytest.approx(0.2009463423477185, abs=1e-9)
    assert metrics["max_drawdown"] == pytest.approx(-0.36432831105976626, abs=1e-9)
    assert metrics["num_trades"] == 58


@pytest.mark.parametrize(
    ("field", "value"),
    [("cost_bps", -2.0), ("cost_bps", math.nan), ("cost_bps", 10_000.0), ("cash", 0.0), ("cash", math.inf)],
)
def test_settings_that_would_flatter_or_break_the_result_are_refused(field: str, value: float) -> None:
    from autotrade.errors import ConfigError

    with pytest.raises(ConfigError, match=field):  # a negative cost would pay the strategy for trading
        BacktestSettings(**{field: value})
