"""The second line of defence: results implausible for daily data are marked suspicious, never rejected."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from autotrade.evaluation.evaluate import suspicions
from autotrade.evaluation.objectives import format_score
from autotrade.propose.prompts import describe_outcome, describe_population
from autotrade.research.attempt import Attempt
from autotrade.status import Status


def frame_of(closes: np.ndarray) -> pd.DataFrame:
    index = pd.bdate_range("2010-01-04", periods=len(closes), name="Date")
    return pd.DataFrame({"Open": closes, "High": closes, "Low": closes, "Close": closes}, index=index)


def test_position_changes_that_foresee_the_next_bar_are_suspicious() -> None:
    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 600)))
    up_next = np.append(closes[1:] > closes[:-1], False)
    foresight = np.where(up_next, 1.0, -1.0)  # buy before every up day, sell before every down day
    found = suspicions(frame_of(closes), foresight, {})
    assert len(found) == 1 and "far above chance" in found[0]


def test_an_ordinary_strategy_is_not_suspicious() -> None:
    rng = np.random.default_rng(4)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 600)))
    sma = pd.Series(closes).rolling(20).mean().to_numpy()
    signals = np.where(closes > sma, 1.0, -1.0)
    assert suspicions(frame_of(closes), signals, {"val": {"sharpe": 1.1}}) == ()


def test_a_validation_sharpe_above_four_on_daily_bars_is_suspicious() -> None:
    closes = np.linspace(100, 200, 300)
    assert "Sharpe 6.5" in suspicions(frame_of(closes), np.zeros(300), {"val": {"sharpe": 6.5}})[0]


def test_the_warning_reaches_the_next_prompt_and_the_population() -> None:
    record = Attempt(
        iteration=3,
        parent=0,
        status=Status.OK,
        entered_population=True,
        objective=0.5,
        hypothesis="x",
        suspicious=("validation Sharpe 9.0 is implausible for daily data",),
    )
    assert "SUSPICIOUS: validation Sharpe 9.0" in describe_outcome(record)
    assert "SUSPICIOUS: validation Sharpe 9.0" in describe_population(
        [record], "val_return", partial(format_score, "val_return")
    )
