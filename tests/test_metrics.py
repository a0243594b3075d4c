"""Metric conventions on constructed returns and equity curves, and bar-frequency inference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from autotrade.engine.metrics import (
    bar_returns,
    cagr,
    calmar_ratio,
    max_drawdown,
    periods_per_year,
    sharpe_ratio,
    sortino_ratio,
)


def test_bar_returns_match_pandas_pct_change() -> None:
    equity = np.array([100.0, 110.0, 99.0, 108.9])
    expected = pd.Series(equity).pct_change().dropna().to_numpy()
    assert bar_returns(equity) == pytest.approx(expected, rel=1e-15)


def test_sharpe_is_mean_over_sample_std_times_sqrt_periods() -> None:
    returns = np.array([0.01, -0.02, 0.03, 0.005])
    series = pd.Series(returns)
    assert sharpe_ratio(returns, 252) == pytest.approx(series.mean() / series.std() * math.sqrt(252), rel=1e-12)


def test_sharpe_of_constant_returns_is_zero() -> None:
    assert sharpe_ratio(np.full(10, 0.001), 252) == 0.0


def test_sharpe_of_a_single_return_is_zero() -> None:
    assert sharpe_ratio(np.array([0.05]), 252) == 0.0


def test_sortino_divides_by_downside_deviation_over_all_bars() -> None:
    returns = np.array([0.02, -0.01, 0.01, -0.03])
    downside = math.sqrt((0.01**2 + 0.03**2) / 4)
    assert sortino_ratio(returns, 365) == pytest.approx(returns.mean() / downside * math.sqrt(365))


def test_sortino_without_a_losing_bar_is_zero() -> None:
    assert sortino_ratio(np.array([0.01, 0.02, 0.0]), 252) == 0.0


def test_max_drawdown_is_deepest_fall_from_running_peak() -> None:
    assert max_drawdown(np.array([100.0, 120.0, 90.0, 130.0, 117.0]), start=100.0) == pytest.approx(-0.25)


def test_max_drawdown_counts_starting_cash_as_first_peak() -> None:
    assert max_drawdown(np.array([99.0, 100.0]), start=100.0) == pytest.approx(-0.01)


def test_max_drawdown_of_rising_curve_is_zero() -> None:
    assert max_drawdown(np.array([100.0, 101.0, 102.0]), start=100.0) == 0.0


def test_cagr_compounds_total_return_over_years() -> None:
    assert cagr(0.21, 2.0) == pytest.approx(0.1)


def test_cagr_of_window_without_calendar_span_is_zero() -> None:
    assert cagr(0.05, 0.0) == 0.0


def test_calmar_is_cagr_over_absolute_drawdown() -> None:
    assert calmar_ratio(0.1, -0.25) == pytest.approx(0.4)


def test_calmar_without_drawdown_is_zero() -> None:
    assert calmar_ratio(0.1, 0.0) == 0.0


def test_periods_per_year_for_daily_equities_is_252() -> None:
    assert periods_per_year(pd.bdate_range("2020-01-01", periods=300)) == 252.0


def test_periods_per_year_for_daily_bars_with_weekends_is_365() -> None:
    assert periods_per_year(pd.date_range("2020-01-01", periods=300, freq="D")) == 365.0


def test_stray_weekend_row_keeps_daily_equities_at_252() -> None:
    index = pd.bdate_range("2020-01-01", periods=300).append(pd.DatetimeIndex(["2021-03-06"])).sort_values()
    assert periods_per_year(index) == 252.0


def test_periods_per_year_for_round_the_clock_hourly_bars_is_hours_per_year() -> None:
    assert periods_per_year(pd.date_range("2020-01-01", periods=2000, freq="h")) == pytest.approx(24 * 365.25)


def test_periods_per_year_for_weekday_hourly_bars_counts_observed_bars() -> None:
    index = pd.date_range("2020-01-06", periods=24 * 7 * 52, freq="h")
    weekdays = index[index.day_of_week < 5]  # FX-like: 24 hours, 5 days a week
    assert periods_per_year(weekdays) == pytest.approx(24 * 5 * 365.25 / 7, rel=0.01)


def test_periods_per_year_for_monthly_bars_is_about_12() -> None:
    assert periods_per_year(pd.date_range("2012-01-01", periods=120, freq="MS")) == pytest.approx(12, rel=0.01)


def test_periods_per_year_for_a_single_bar_defaults_to_252() -> None:
    assert periods_per_year(pd.DatetimeIndex(["2020-01-02"])) == 252.0


def test_periods_per_year_for_bundled_sp500_is_252(sp500: pd.DataFrame) -> None:
    assert periods_per_year(sp500.index) == 252.0
