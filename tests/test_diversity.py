"""Diversity: indicator families from the AST, structure hashes that ignore cosmetic changes, position correlation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotrade.candidate import baseline_source, extract_block
from autotrade.evaluation.families import FAMILIES, block_families
from autotrade.report.diversity import (
    CollapseEpisode,
    collapse_episodes,
    measure_diversity,
    position_correlation,
    profile_block,
)
from autotrade.research.attempt import Attempt
from autotrade.status import Status


def sma(fast: int, slow: int, fast_name: str = "fast", slow_name: str = "slow") -> str:
    return (
        "def generate_features(df):\n"
        f"    df['{fast_name}'] = df['Close'].rolling({fast}).mean()\n"
        f"    df['{slow_name}'] = df['Close'].rolling({slow}).mean()\n"
        "    return df\n\n\n"
        "def strategy_logic(row):\n"
        f"    if row['{fast_name}'] > row['{slow_name}']:\n"
        "        return 1\n"
        f"    if row['{fast_name}'] < row['{slow_name}']:\n"
        "        return -1\n"
        "    return 0\n"
    )


RSI = """def generate_features(df):
    delta = df['Close'].diff()
    gain = delta.clip(lower=0).rolling(14).mean()
    loss = (-delta.clip(upper=0)).rolling(14).mean()
    df['rsi'] = 100 - 100 / (1 + gain / loss)
    return df


def strategy_logic(row):
    return 1 if row['rsi'] < 30 else (-1 if row['rsi'] > 70 else 0)
"""
MACD = """def generate_features(df):
    df['m'] = df['Close'].ewm(span=12).mean() - df['Close'].ewm(span=26).mean()
    df['s'] = df['m'].ewm(span=9).mean()
    return df


def strategy_logic(row):
    return 1 if row['m'] > row['s'] else -1
"""
BREAKOUT = """def generate_features(df):
    df['hi'] = df['High'].rolling(20).max().shift(1)
    df['lo'] = df['Low'].rolling(20).min().shift(1)
    df['v'] = df['Volume'].rolling(20).mean()
    return df


def strategy_logic(row):
    if row['Close'] > row['hi'] and row['Volume'] > row['v']:
        return 1
    return -1 if row['Close'] < row['lo'] else 0
"""
ZSCORE = """def generate_features(df):
    mean = df['Close'].rolling(20).mean()
    sd = df['Close'].rolling(20).std()
    df['z'] = (df['Close'] - mean) / sd
    df['roc'] = df['Close'] / df['Close'].shift(10) - 1
    return df


def strategy_logic(row):
    return 1 if row['z'] < -2 else (-1 if row['z'] > 0 else 0)
"""


def test_families_are_recognised_from_the_syntax_tree() -> None:
    assert {"moving average", "crossover"} <= profile_block(extract_block(baseline_source())).families
    assert "RSI-like" in profile_block(RSI).families
    assert {"MACD-like", "ewm"} <= profile_block(MACD).families
    assert {"breakout", "volume"} <= profile_block(BREAKOUT).families
    assert {"mean reversion", "volatility", "momentum"} <= profile_block(ZSCORE).families
    assert "volume" not in profile_block(RSI).families and "breakout" not in profile_block(MACD).families


def test_operations_and_columns_are_counted() -> None:
    profile = profile_block(BREAKOUT)
    assert profile.operations["rolling"] == 3 and profile.operations["shift"] == 2
    assert profile.columns == {"High", "Low", "Close", "Volume"}


def test_names_parameters_and_comments_do_not_make_a_new_strategy() -> None:
    base = profile_block(sma(10, 30)).structure
    renamed = sma(20, 50, "quick", "slow_ma").replace("    return df\n", "    # longer windows\n    return df\n")
    assert profile_block(renamed).structure == base
    assert profile_block(sma(10, 30).replace("'Close'", "'Open'")).structure != base  # another price column
    assert profile_block(RSI).structure != base


def test_unparseable_block_has_no_structure_and_is_not_counted() -> None:
    assert profile_block("def generate_features(df)\n    return df\n").structure is None
    diversity = measure_diversity({0: sma(10, 30), 1: "def f(:\n"}, ok=[0], population=[0], positions={})
    assert diversity.candidates == 1 and diversity.distinct == 1


def test_position_correlation_is_one_for_copies_and_undefined_against_a_constant() -> None:
    moving = np.array([0, 1, 1, 0, 1, 0, 0, 1], dtype=float)
    matrix = position_correlation([moving, moving.copy(), np.ones(8), 1 - moving])
    assert matrix[0, 1] == 1.0 and matrix[0, 3] == pytest.approx(-1.0)
    assert math.isnan(matrix[0, 2]) and np.allclose(np.diag(matrix), 1.0)


def test_a_population_of_copies_is_reported_as_collapsed() -> None:
    positions = np.array([0, 1, 1, 0, 1, 1, 0, 0], dtype=float)
    blocks = {0: sma(20, 50), 1: sma(10, 30), 2: sma(5, 15, "a", "b"), 3: sma(30, 90)}
    diversity = measure_diversity(
        blocks, ok=[0, 1, 2, 3], population=[1, 2, 3], positions={i: positions for i in blocks}
    )
    assert (diversity.distinct, diversity.distinct_ok) == (1, 1)
    assert diversity.mean_correlation == 1.0 and diversity.copies_of_start == 3
    assert diversity.collapsed and diversity.verdict().startswith("collapsed")


def test_different_strategies_are_not_collapsed() -> None:
    blocks = {0: sma(20, 50), 1: RSI, 2: MACD, 3: BREAKOUT, 4: ZSCORE}
    rng = np.random.default_rng(0)
    positions = {i: rng.integers(0, 2, 200).astype(float) for i in blocks}
    diversity = measure_diversity(blocks, ok=list(blocks), population=[1, 2, 3], positions=positions)
    assert diversity.distinct == 5 and diversity.repeats == 0
    assert abs(diversity.mean_correlation) < 0.3 and not diversity.collapsed
    assert diversity.family_counts["moving average"] >= 2


def test_a_blocks_families_come_from_the_evaluation_stage_in_vocabulary_order() -> None:
    assert block_families(sma(10, 30)) == ("moving average", "crossover")
    assert block_families(MACD) == tuple(f for f in FAMILIES if f in profile_block(MACD).families)
    assert block_families("def f(:\n") is None


CROSSOVER = ("moving average", "crossover")


def ok(i: int, families: tuple[str, ...] | None, objective: float, nudged: bool = False) -> Attempt:
    return Attempt(iteration=i, status=Status.OK, families=families, objective=objective, nudged=nudged)


def test_a_collapse_is_shown_with_what_the_nudged_prompts_did_and_the_best_before_and_after() -> None:
    records = [
        ok(0, CROSSOVER, 0.1),
        ok(1, CROSSOVER, 0.2),
        Attempt(iteration=2, status=Status.RUNTIME_ERROR),
        ok(3, CROSSOVER, 0.15),
        ok(4, CROSSOVER, 0.1, nudged=True),
        ok(5, ("RSI-like",), 0.3, nudged=True),
        ok(6, ("RSI-like",), 0.25),
        ok(7, CROSSOVER, 0.9),
    ]
    assert collapse_episodes(records, {}, 3) == (
        CollapseEpisode(CROSSOVER, at=3, window=3, first_nudge=4, after=3, escaped=2, best_before=0.2, best_after=0.9),
    )


def test_a_run_that_never_nudged_shows_its_collapse_from_the_blocks_of_records_without_families() -> None:
    records = [ok(i, None, 0.1 * i) for i in range(4)]
    blocks = {i: sma(10 + i, 30) for i in range(4)}
    (episode,) = collapse_episodes(records, blocks, 2)
    assert (episode.family, episode.at, episode.first_nudge, episode.after) == (CROSSOVER, 1, None, 0)
    assert (episode.best_before, episode.best_after) == (pytest.approx(0.1), None)
    assert collapse_episodes(records, {}, 2) == ()  # neither families nor code: nothing to tell


def test_a_relapse_is_a_second_collapse_and_bounds_what_the_first_nudge_is_credited_with() -> None:
    rsi = ("RSI-like",)
    records = [
        ok(0, CROSSOVER, 0.1),
        ok(1, CROSSOVER, 0.1),
        ok(2, rsi, 0.2, True),
        ok(3, rsi, 0.5),
        ok(4, rsi, 0.4, True),
    ]
    first, second = collapse_episodes(records, {}, 2)
    assert (first.at, first.first_nudge, first.after, first.escaped, first.best_after) == (1, 2, 1, 1, 0.2)
    assert (second.family, second.at, second.first_nudge, second.best_before) == (rsi, 3, 4, 0.5)
