"""Novelty: which proposals repeat an earlier strategy (structure up to cosmetics, or positions), and what the loop
does with them."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openai_server import OpenAIServer, Reply
from recording import RecordingReporter

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.windows import Window
from autotrade.engine.backtest import WindowResult
from autotrade.evaluation.evaluate import Evaluation
from autotrade.evaluation.novelty import (
    block_structure,
    correlation,
    decode_positions,
    encode_positions,
    position_twin,
    structure_hash,
)
from autotrade.propose.prompts import describe_outcome, load_prompt_files
from autotrade.report.compute import failure_taxonomy
from autotrade.research.attempt import Attempt
from autotrade.research.config import RunSettings, model_settings
from autotrade.research.loop import start_run
from autotrade.research.twins import judge
from autotrade.status import Status

SMA = extract_block(baseline_source())  # the baseline: a 20/50 moving-average crossover

# The SMA crossover resubmitted with every cosmetic edit at once: names, comments, docstrings, the two
# independent lines swapped, `window=` passed by position.
COSMETIC_COPY = '''def generate_features(frame):
    # the slow average first this time
    frame["long_avg"] = frame["Close"].rolling(50).mean()
    frame["short_avg"] = frame["Close"].rolling(20).mean()
    return frame


def strategy_logic(r):
    """Long above, short below."""
    if r["short_avg"] > r["long_avg"]:
        return 1
    if r["short_avg"] < r["long_avg"]:
        return -1
    return 0
'''

# Another structure with the SMA crossover's positions, bar for bar.
SAME_POSITIONS = """def generate_features(df):
    df["gap"] = df["Close"].rolling(window=20).mean() - df["Close"].rolling(window=50).mean()
    return df


def strategy_logic(row):
    return 1 if row["gap"] > 0 else (-1 if row["gap"] < 0 else 0)
"""


def same(a: str, b: str) -> bool:
    return block_structure(a) == block_structure(b)


# -- structure twins -----------------------------------------------------------------------------------------


def test_renamed_variables_columns_and_functions_are_the_same_strategy() -> None:
    renamed = SMA.replace("SMA_20", "quick").replace("SMA_50", "slowish").replace("df", "data").replace("row", "r")
    assert same(SMA, renamed)


def test_comments_and_docstrings_are_cosmetic() -> None:
    commented = SMA.replace(
        '    """Add the 20- and 50-day simple moving averages of the close."""\n', "    # averages\n"
    )
    assert same(SMA, commented.replace("    return 0\n", "    return 0  # flat on a tie\n"))


def test_reordered_independent_lines_are_the_same_strategy() -> None:
    fast = '    df["SMA_20"] = df["Close"].rolling(window=20).mean()\n'
    slow = '    df["SMA_50"] = df["Close"].rolling(window=50).mean()\n'
    swapped = SMA.replace(fast + slow, slow + fast)
    assert swapped != SMA and same(SMA, swapped)


def test_functions_defined_in_the_other_order_are_the_same_strategy() -> None:
    features, logic = SMA.split("\n\n\ndef strategy_logic")
    assert same(SMA, f"def strategy_logic{logic.rstrip()}\n\n\n{features}\n")


def test_all_cosmetic_edits_at_once_are_the_same_strategy() -> None:
    assert same(SMA, COSMETIC_COPY)


def test_a_line_that_reads_another_keeps_its_place() -> None:
    ordered = "def f(df):\n    df['a'] = df['Close'] * 2\n    df['b'] = df['a'] + 1\n    return df\n"
    swapped = "def f(df):\n    df['b'] = df['a'] + 1\n    df['a'] = df['Close'] * 2\n    return df\n"
    assert not same(ordered, swapped)


def test_a_method_that_may_change_its_variable_keeps_its_place() -> None:
    ordered = "def f(df):\n    xs = [1]\n    a = xs.pop()\n    b = len(xs)\n    return a, b\n"
    swapped = "def f(df):\n    xs = [1]\n    b = len(xs)\n    a = xs.pop()\n    return a, b\n"
    assert not same(ordered, swapped)


@pytest.mark.parametrize(
    ("positional", "keyword"),
    [
        ("s.rolling(20).mean()", "s.rolling(window=20).mean()"),
        ("s.rolling(20, 5).std()", "s.rolling(min_periods=5, window=20).std()"),
        ("s.shift(1)", "s.shift(periods=1)"),
        ("s.pct_change(5)", "s.pct_change(periods=5)"),
        ("s.diff(3)", "s.diff(periods=3)"),
        ("s.ewm(9).mean()", "s.ewm(com=9).mean()"),
    ],
)
def test_a_pandas_parameter_by_position_or_by_keyword_is_the_same(positional: str, keyword: str) -> None:
    assert same(f"def f(s):\n    return {positional}\n", f"def f(s):\n    return {keyword}\n")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("s.ewm(9).mean()", "s.ewm(span=9).mean()"),  # com and span are different smoothings
        ("s.ewm(span=9).mean()", "s.ewm(alpha=9).mean()"),
        ("s.rolling(20).mean()", "s.rolling(20).max()"),  # a different operation
        ("s.rolling(20).mean()", "s.rolling(21).mean()"),  # different numbers: its own result
    ],
)
def test_calls_that_compute_something_else_differ(one: str, other: str) -> None:
    assert not same(f"def f(s):\n    return {one}\n", f"def f(s):\n    return {other}\n")


@pytest.mark.parametrize(
    "variant",
    [
        SMA.replace('row["SMA_20"] > row["SMA_50"]', 'row["SMA_20"] < row["SMA_50"]'),  # a different comparison
        SMA.replace('df["Close"].rolling(window=50)', 'df["Open"].rolling(window=50)'),  # a different column
        SMA.replace(".rolling(window=50).mean()", ".rolling(window=50).median()"),  # a different operation
    ],
)
def test_genuinely_different_strategies_are_neither_twins_nor_one_family(variant: str) -> None:
    assert not same(SMA, variant)
    assert structure_hash(ast.parse(SMA)) != structure_hash(ast.parse(variant))


def test_changed_numbers_are_one_family_for_the_report_but_not_a_twin_for_the_loop() -> None:
    tuned = SMA.replace("window=20", "window=10").replace("window=50", "window=30")
    assert structure_hash(ast.parse(SMA)) == structure_hash(ast.parse(tuned))
    assert not same(SMA, tuned)


def test_look_alike_lines_reordered_are_one_family() -> None:
    # With numbers blanked the two averages look alike: either order gives one canonical form, names and all.
    assert structure_hash(ast.parse(SMA)) == structure_hash(
        ast.parse(COSMETIC_COPY.replace("rolling(50)", "rolling(7)"))
    )


def test_a_block_that_does_not_parse_has_no_structure() -> None:
    assert block_structure("def f(:\n") is None


# -- position twins --------------------------------------------------------------------------------------------


def test_constant_positions_correlate_with_nothing_but_their_equal() -> None:
    flat, moving = np.zeros(6), np.array([0, 1, 1, 0, 1, 0.0])
    assert correlation(flat, moving) is None and correlation(np.ones(6), np.ones(6)) == 1.0
    assert correlation(moving, moving[:5]) is None


def test_the_most_correlated_member_at_or_over_the_threshold_is_the_twin() -> None:
    base = np.tile([0.0, 1.0], 500)
    near = base.copy()
    near[:2] = 1 - near[:2]  # 2 bars of 1,000 differ: correlation 0.996
    far = base.copy()
    far[:20] = 1 - far[:20]  # correlation 0.96
    assert position_twin(base, {3: far, 5: near}) == (5, pytest.approx(0.996))
    assert position_twin(base, {3: far}) is None


def test_positions_survive_their_record_form() -> None:
    positions = np.array([0, 1, 1, 0, 1, 1, 1, 0, 0, 1.0])
    assert np.array_equal(decode_positions(encode_positions(positions)), positions)
    with pytest.raises(ValueError):
        encode_positions(np.array([0.5]))


# -- what the prompt and the report make of duplicates -------------------------------------------------------


def test_the_next_prompt_names_the_twin_and_asks_for_a_different_idea() -> None:
    message = "repeats iteration 7: the same strategy up to names (its result is reused); propose a different idea"
    shown = describe_outcome(Attempt(iteration=9, status=Status.DUPLICATE, parent=7, message=message, twin=7))
    assert "repeats iteration 7" in shown and "Try a different idea" in shown and "Fix the cause" not in shown


def test_the_report_counts_structure_and_position_twins_and_the_time_saved() -> None:
    attempts = [
        Attempt(iteration=0, status=Status.OK, eval_s=2.5),
        Attempt(iteration=1, status=Status.DUPLICATE, twin=0, saved_s=2.5),
        Attempt(iteration=2, status=Status.DUPLICATE, twin=0, saved_s=2.5),
        Attempt(iteration=3, status=Status.DUPLICATE, twin=0, twin_correlation=0.995),
    ]
    taxonomy = failure_taxonomy(attempts)
    assert (taxonomy.structure_twins, taxonomy.position_twins, taxonomy.saved_s) == (2, 1, 5.0)
    assert taxonomy.failures == 3


def test_a_run_configured_before_novelty_resumes_without_it() -> None:
    assert RunSettings.from_dict({}).novelty is False and RunSettings().novelty is True


# -- the loop --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twin_run(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict], list[str]]]:
    """Baseline (the SMA crossover), then its cosmetic copy, then another structure with its positions."""
    root = tmp_path_factory.mktemp("novelty")
    with OpenAIServer() as server:
        server.script([Reply(f"```python\n{COSMETIC_COPY}```\n"), Reply(f"```python\n{SAME_POSITIONS}```\n")])
        endpoint = model_settings(base_url=server.base_url, environ={"OPENAI_API_KEY": "sk-test"})
        settings = RunSettings(max_iter=3, max_fails=10, seed=7, data_dir=str(small_data), repair=0)
        result = start_run(
            settings, endpoint, RecordingReporter(), prompts=load_prompt_files(root), name="twins", root=root
        )
        prompts = [r.body["messages"][-1]["content"] for r in server.chat_requests]
    yield [json.loads((result.path / f"iter_{i}_results.json").read_text()) for i in range(3)], prompts


def test_a_structure_twin_is_not_evaluated_and_reuses_its_twins_result(twin_run: tuple[list[dict], list[str]]) -> None:
    records, prompts = twin_run
    baseline, copy = records[0], records[1]
    assert (copy["status"], copy["twin"], copy["twin_correlation"]) == ("duplicate", 0, None)
    assert "repeats iteration 0" in copy["message"] and "different idea" in copy["message"]
    assert (copy["eval_s"], copy["timings"], copy["output"]) == (0.0, {}, "")  # nothing ran
    assert copy["windows"] == baseline["windows"] and copy["saved_s"] == baseline["eval_s"] > 0
    assert copy["objective"] is None and not copy["entered_population"] and copy["fail_streak"] == 1
    assert "repeats iteration 0" in prompts[1]  # the next proposal is told


def test_a_position_twin_of_a_population_member_is_a_duplicate(twin_run: tuple[list[dict], list[str]]) -> None:
    records, _ = twin_run
    twin = records[2]
    assert (twin["status"], twin["twin"]) == ("duplicate", 0) and twin["twin_correlation"] >= 0.99
    assert "validation positions correlate" in twin["message"] and twin["eval_s"] > 0
    assert twin["structure"] != records[0]["structure"] and "positions" not in twin and "positions" in records[0]


def positions_evaluation(positions: np.ndarray) -> Evaluation:
    """An ok evaluation holding only validation positions."""
    series = pd.Series(positions)
    return Evaluation(Status.OK, curves={Window.VAL: WindowResult(metrics={}, equity=series, position=series)})


def test_an_ok_result_with_an_earlier_ok_structure_is_a_duplicate_at_commit() -> None:
    # With --parallel the twin may commit while this one is already being evaluated: the verdict is the same.
    records = [Attempt(iteration=0, status=Status.OK, structure="abc"), Attempt(iteration=1, status=Status.OK)]
    judged, twin = judge(positions_evaluation(np.tile([0.0, 1.0], 50)), "abc", records, [0, 1])
    assert (judged.status, twin) == (Status.DUPLICATE, (0, None)) and "before its twin had committed" in judged.message


def test_only_population_members_positions_make_a_twin_and_only_for_an_ok_result() -> None:
    positions = np.tile([0.0, 1.0], 50)
    records = [Attempt(iteration=0, status=Status.OK, positions=encode_positions(positions))]
    judged, twin = judge(positions_evaluation(positions), "new", records, [0])
    assert (judged.status, twin) == (
        Status.DUPLICATE,
        (0, 1.0),
    ) and "correlate 1.000 with iteration 0's" in judged.message
    assert judge(positions_evaluation(positions), "new", records, [])[1] is None  # no longer a member
    failed = Evaluation(Status.NO_TRADES)
    assert judge(failed, "abc", [Attempt(iteration=0, status=Status.OK, structure="abc")], [0]) == (failed, None)
