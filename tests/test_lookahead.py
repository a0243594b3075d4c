"""The look-ahead gate: prefix runs in fresh workers must agree with the full run on shared bars."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from autotrade.errors import CandidateError
from autotrade.sandbox.lookahead import check_lookahead, cut_points, seed_for
from autotrade.sandbox.worker import Limits, run_candidate

ROWS = 400
VAL_START = 300  # position of the first validation bar in the test frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """A synthetic daily OHLCV frame with a trend and noise (enough bars for 50-day windows)."""
    rng = np.random.default_rng(42)
    index = pd.bdate_range("2010-01-04", periods=ROWS, name="Date")
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, ROWS)))
    open_ = close * (1 + rng.normal(0, 0.003, ROWS))
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * 1.005,
                         "Low": np.minimum(open_, close) * 0.995, "Close": close, "Adj Close": close,
                         "Volume": rng.integers(1_000_000, 5_000_000, ROWS).astype(float)}, index=index)


def gate(block: str, frame: pd.DataFrame) -> CandidateError | None:
    """Run the block with the default cut points and the gate; the gate's error, or None when it passes."""
    block = textwrap.dedent(block)
    cuts = cut_points(len(frame), VAL_START, seed_for(block))
    try:
        output = run_candidate(block, frame, cuts, Limits(timeout_s=20))
        check_lookahead(output, frame.index)
    except CandidateError as exc:
        return exc
    return None


def features_block(expression: str, rule: str = "1 if row['f'] > row['Close'] else -1") -> str:
    """A block whose only feature is `f = expression` (on df) and whose signal compares it with Close."""
    return f"""
def generate_features(df):
    df["f"] = {expression}
    return df

def strategy_logic(row):
    if pd.isna(row["f"]):
        return 0
    return {rule}
"""


LOOKAHEAD_FEATURES = {
    "negative_shift": 'df["Close"].shift(-1)',
    "centred_window": 'df["Close"].rolling(11, center=True).mean()',
    "backward_fill": 'df["Close"].where(df.index.dayofweek == 4).bfill()',
    "interpolation": 'df["Close"].where(df.index.dayofweek == 0).interpolate()',
    "global_zscore": '(df["Close"] - df["Close"].mean()) / df["Close"].std() + df["Close"]',
    "global_min_max": '(df["Close"] - df["Close"].min()) / (df["Close"].max() - df["Close"].min()) * 200',
    "full_sample_rank": 'df["Close"].rank(pct=True) * 200',
    "quantile_cut": 'pd.qcut(df["Close"], 5, labels=False) * 40.0',
    "gradient": 'pd.Series(np.gradient(df["Close"].to_numpy()), index=df.index) + df["Close"]',
    "last_bar_peek": 'df["Close"] / df["Close"].iloc[-1] * 100',
    "future_max": 'df["Close"][::-1].cummax()[::-1]',
    "fixed_future_position": 'df["Close"] * 0 + df["Close"].iloc[350]',
}


@pytest.mark.parametrize("name", sorted(LOOKAHEAD_FEATURES))
def test_feature_that_reads_future_bars_is_caught(frame: pd.DataFrame, name: str) -> None:
    error = gate(features_block(LOOKAHEAD_FEATURES[name]), frame)
    assert error is not None and error.status == "lookahead", error
    assert "look-ahead" in str(error)


def test_message_names_the_column_and_the_date(frame: pd.DataFrame) -> None:
    error = gate(features_block(LOOKAHEAD_FEATURES["negative_shift"]), frame)
    assert error is not None
    message = str(error)
    assert "column 'f'" in message
    cut = min(cut_points(ROWS, VAL_START, seed_for(textwrap.dedent(features_block(LOOKAHEAD_FEATURES["negative_shift"])))))
    assert str(frame.index[cut - 1].date()) in message  # the last bar of the shortest prefix: its next bar is gone


def test_overwriting_close_with_future_prices_is_caught_in_that_column(frame: pd.DataFrame) -> None:
    block = """
def generate_features(df):
    df["Close"] = df["Close"].shift(-2)
    return df

def strategy_logic(row):
    return 1 if row["Close"] > row["Open"] else -1
"""
    error = gate(block, frame)
    assert error is not None and "column 'Close'" in str(error)


def test_future_smuggled_through_a_module_dict_is_caught_in_the_signal(frame: pd.DataFrame) -> None:
    block = """
FUTURE = {}

def generate_features(df):
    ahead = df["Close"].shift(-5) / df["Close"] - 1
    for date, value in zip(df.index, ahead):
        FUTURE[date] = value
    return df

def strategy_logic(row):
    return 1 if FUTURE.get(row.name, 0) > 0 else -1
"""
    error = gate(block, frame)
    assert error is not None and error.status == "lookahead"
    assert "the signal" in str(error)


def test_last_close_kept_in_a_global_is_caught(frame: pd.DataFrame) -> None:
    block = """
STATE = {"last": None}

def generate_features(df):
    STATE["last"] = df["Close"].iloc[-1]
    return df

def strategy_logic(row):
    return 1 if row["Close"] < STATE["last"] else -1
"""
    error = gate(block, frame)
    assert error is not None and "the signal" in str(error)


def test_bars_remaining_counter_is_caught(frame: pd.DataFrame) -> None:
    block = """
COUNT = [0, 0]

def generate_features(df):
    COUNT[1] = len(df)
    return df

def strategy_logic(row):
    COUNT[0] += 1
    return 1 if COUNT[1] - COUNT[0] > 100 else -1
"""
    error = gate(block, frame)
    assert error is not None and "the signal" in str(error)


def test_block_that_fails_without_later_bars_is_lookahead(frame: pd.DataFrame) -> None:
    block = """
def generate_features(df):
    df["anchor"] = df["Close"].iloc[350]
    return df

def strategy_logic(row):
    return 1 if row["Close"] > row["anchor"] else -1
"""
    error = gate(block, frame)
    assert error is not None and error.status == "lookahead"
    assert "fails when bars after" in str(error) and error.error_type == "IndexError"


HONEST = {
    "sma_crossover": """
def generate_features(df):
    df["fast"] = df["Close"].rolling(20).mean()
    df["slow"] = df["Close"].rolling(50).mean()
    return df

def strategy_logic(row):
    return 1 if row["fast"] > row["slow"] else -1
""",
    "rsi_ewm": """
def generate_features(df):
    delta = df["Close"].diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
    df["rsi"] = 100 - 100 / (1 + gain / loss)
    return df

def strategy_logic(row):
    if pd.isna(row["rsi"]):
        return 0
    return 1 if row["rsi"] < 30 else (-1 if row["rsi"] > 70 else 0)
""",
    "macd_ewm_adjusted": """
def generate_features(df):
    macd = df["Close"].ewm(span=12).mean() - df["Close"].ewm(span=26).mean()
    df["macd"] = macd
    df["signal_line"] = macd.ewm(span=9).mean()
    return df

def strategy_logic(row):
    return 1 if row.macd > row.signal_line else -1
""",
    "breakout_on_shifted_rolling_max": """
def generate_features(df):
    df["high_20"] = df["High"].rolling(20).max().shift(1)
    df["low_20"] = df["Low"].rolling(20).min().shift(1)
    df["vol"] = df["Close"].pct_change().rolling(20).std()
    df["trend"] = df["Close"].expanding().mean()
    df["rank"] = df["Close"].rolling(30).rank(pct=True)
    return df

def strategy_logic(row):
    if row["Close"] > row.get("high_20", float("inf")):
        return 1
    if row["Close"] < row["low_20"]:
        return -1
    return 0
""",
    "stateful_but_causal_strategy": """
SEEN = []

def generate_features(df):
    df["ret"] = df["Close"].pct_change()
    return df

def strategy_logic(row):
    SEEN.append(row["ret"])
    recent = [r for r in SEEN[-5:] if r == r]
    return 1 if recent and sum(recent) > 0 else -1
""",
    "seeded_legacy_random": """
def generate_features(df):
    df["noise"] = np.random.rand(len(df))
    return df

def strategy_logic(row):
    return 1 if row["noise"] > 0.5 else -1
""",
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_causal_strategy_passes_the_gate(frame: pd.DataFrame, name: str) -> None:
    assert gate(HONEST[name], frame) is None


def test_cut_points_cover_train_boundary_and_validation() -> None:
    cuts = cut_points(5031, 4000, seed=7, n_random=2)
    assert cuts == sorted(cuts) and len(cuts) == 5
    assert 4000 in cuts  # at the boundary: the prefix is exactly the training window
    assert any(c < 4000 for c in cuts) and any(c > 4000 for c in cuts)
    assert all(30 <= c < 5031 for c in cuts)


def test_cut_points_are_reproducible_per_seed() -> None:
    assert cut_points(5031, 4000, seed=seed_for("a")) == cut_points(5031, 4000, seed=seed_for("a"))
    assert cut_points(5031, 4000, seed=seed_for("a")) != cut_points(5031, 4000, seed=seed_for("b"))


def test_cut_points_without_a_validation_boundary_use_quarters() -> None:
    assert {250, 500, 750} <= set(cut_points(1000, 0, seed=1, n_random=0))
    assert cut_points(1, 0, seed=1) == []


def test_nan_equals_nan_and_float_noise_is_tolerated() -> None:
    class Run:
        def __init__(self, rows: int, values: np.ndarray, prefixes: tuple = ()) -> None:
            self.rows, self.columns, self.prefixes = rows, ("f",), prefixes
            self.features = {"f": values}
            self.signals = np.zeros(rows)

    index = pd.bdate_range("2020-01-01", periods=4)
    full = Run(4, np.array([np.nan, 1.0, 2.0, 3.0]))
    check_lookahead(full, index, [Run(3, np.array([np.nan, 1.0 + 1e-13, 2.0]))])
    with pytest.raises(CandidateError, match=r"column 'f' at 2020-01-02"):
        check_lookahead(full, index, [Run(3, np.array([np.nan, 1.1, 2.0]))])
