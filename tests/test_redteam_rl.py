"""Red-team checks of the training surface (issue 14): completions a policy could learn to earn a reward with that it
did not earn, inputs that make the reward raise or stall a trainer's step, and run directories that make `autotrade
export` fail with a traceback. A policy trained for thousands of steps finds whatever the loop's weaker search
pressure never did."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from legacy_run import FIXTURE
from test_loop import answer
from typer.testing import CliRunner

from autotrade.candidate import baseline_source, extract_block
from autotrade.cli.app import app
from autotrade.data.prepared import load_prepared
from autotrade.errors import ConfigError
from autotrade.evaluation import evaluate
from autotrade.evaluation.evaluate import Evaluation
from autotrade.evaluation.objectives.composite import PERFORMANCE_WEIGHT
from autotrade.evaluation.objectives.rubric import rubric_score
from autotrade.evaluation.score import score_evaluation
from autotrade.propose.reply import split_reasoning
from autotrade.rl import reward_function
from autotrade.rl.reward import RewardFunction
from autotrade.status import Status

BASELINE = extract_block(baseline_source())
# The parent resubmitted with one line that changes nothing it computes: a different structure, the same positions.
COSMETIC_COPIES = {
    "unused constant": "UNUSED = 1\n\n\n" + BASELINE,
    "no-op assignment": BASELINE.replace("    return df", "    _ = 0\n    return df"),
    "unused column": BASELINE.replace("    return df", "    df['junk'] = 0.0\n    return df"),
}


@pytest.fixture(scope="module")
def reward(tiny_data: Path) -> Iterator[RewardFunction]:
    with reward_function(load_prepared(tiny_data), "rubric", workers=2) as made:
        yield made


def test_a_parent_copy_with_a_line_that_changes_nothing_is_a_duplicate(reward: RewardFunction) -> None:
    rewards = reward(prompts=None, completions=[answer(block, "Keep it") for block in COSMETIC_COPIES.values()])
    assert rewards == [0.0] * len(COSMETIC_COPIES)
    assert [score.status for score in reward.last] == ["duplicate"] * len(COSMETIC_COPIES)


@pytest.mark.xfail(
    strict=True,
    reason="the reward scores fixed, known validation windows: a table of their up days is causal (the gate passes "
    "it), too sparse for the suspicion checks, and earns ~0.96 against the baseline's ~0.59; needs windows a policy "
    "cannot memorise (see the red-team report)",
)
def test_a_table_of_the_validation_windows_up_days_earns_nothing(reward: RewardFunction, tiny_data: Path) -> None:
    frame = load_prepared(tiny_data).research_frame()
    up = frame.index[(frame["Close"].shift(-1) > frame["Close"]).to_numpy()]
    days = [d.year * 10000 + d.month * 100 + d.day for d in up if d >= pd.Timestamp("2018-01-01")][::4]
    block = (
        f"UP = set({days!r})\n\n\ndef generate_features(df):\n"
        "    df['up'] = [1.0 if d.year * 10000 + d.month * 100 + d.day in UP else 0.0 for d in df.index]\n"
        "    return df\n\n\ndef strategy_logic(row):\n    return 1 if row['up'] > 0 else -1\n"
    )
    assert reward(prompts=None, completions=[answer(block, "Memory")]) == [0.0]


def test_the_gate_draws_a_fresh_secret_for_every_evaluation(
    reward: RewardFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets: list[int | str] = []

    def spy(source: str, secret: int | str = "") -> int:
        secrets.append(secret)
        return real(source, secret)

    real = evaluate.seed_for
    monkeypatch.setattr(evaluate, "seed_for", spy)
    other = answer(BASELINE.replace("window=50", "window=40"), "Faster")
    reward(prompts=None, completions=[other, other])
    assert len(secrets) >= 2 and len(set(secrets)) == len(secrets)  # the parent's own evaluation too, when first seen


def test_thousands_of_unclosed_think_tags_are_split_in_linear_time() -> None:
    started = time.perf_counter()
    content, _ = split_reasoning("<think>" * 30_000 + answer(BASELINE, "x"))
    assert content == "" and time.perf_counter() - started < 1.0  # the lazy regex took 77 s here


@pytest.mark.parametrize("column", ["asset", "parent_block", "completion_ids"])
def test_a_dataset_column_shorter_than_the_completions_is_one_clear_error(reward: RewardFunction, column: str) -> None:
    values = {"asset": ["spx"], "parent_block": [BASELINE], "completion_ids": [[0]]}
    with pytest.raises(ConfigError, match=f"1 value.*`{column}` for 2 completions"):
        reward(prompts=None, completions=["a", "b"], **{column: values[column]})


def test_a_closed_reward_refuses_to_score_rather_than_answer_the_floor(tiny_data: Path) -> None:
    closed = reward_function(load_prepared(tiny_data), "rubric", workers=1)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.score(answer(BASELINE, "x"))
    with pytest.raises(RuntimeError, match="closed"):
        closed(prompts=None, completions=["x"])


@pytest.mark.parametrize("sharpe", [math.nan, math.inf, -math.inf, -1e300])
def test_a_composite_strategy_with_an_extreme_sharpe_never_scores_above_a_failed_check(sharpe: float) -> None:
    metrics = {"sharpe": sharpe, "num_trades": 3.0, "final_equity": 1.0e4}
    score = score_evaluation(Evaluation(Status.OK, windows={"train": metrics, "val": metrics}), "composite")
    assert score.total <= -PERFORMANCE_WEIGHT and not math.isnan(score.total)


@pytest.mark.xfail(
    strict=True,
    reason="rubric design: one trade of one bar passes the trades gate, and drawdown, costs and most of "
    "beats_buy_and_hold reward staying out (0.45 here, 76% of buy-and-hold's 0.59): a policy can settle on idling; "
    "needs a gate or components scaled by time in the market (left to the rubric's owner)",
)
def test_a_strategy_in_the_market_for_one_bar_scores_under_half_of_buy_and_hold() -> None:
    idle = {"num_trades": 1, "exposure": 1 / 126, "sharpe": 0.3, "max_drawdown": -0.002, "total_return": 0.001}
    hold = {"num_trades": 1, "exposure": 1.0, "sharpe": 1.0, "max_drawdown": -0.1, "total_return": 0.10}
    market = {"buy_and_hold_return": 0.10, "total_costs": 2.0}
    idle_score, hold_score = (
        rubric_score(m | market | {"final_equity": 1e4 * (1 + m["total_return"])}).total for m in (idle, hold)
    )
    assert idle_score < hold_score / 2


def export_legacy(root: Path, monkeypatch: pytest.MonkeyPatch, edit: dict[str, object]) -> tuple[int, str, str]:
    """`autotrade export legacy` of the legacy fixture with iteration 2's record changed; exit code, stdout, stderr."""
    run = root / "train" / "legacy"
    shutil.copytree(FIXTURE, run)
    path = run / "iter_2_results.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    for key, value in edit.items():
        if key.startswith("val."):
            record["windows"]["val"][key[4:]] = value
        else:
            record[key] = value
    path.write_text(json.dumps(record), encoding="utf-8")
    monkeypatch.chdir(root)
    outcome = CliRunner().invoke(app, ["export", "legacy"])
    assert not isinstance(outcome.exception, Exception) or isinstance(outcome.exception, SystemExit), outcome.exception
    return outcome.exit_code, outcome.stdout, outcome.stderr


def test_a_run_whose_objective_this_version_lacks_exports_with_the_recorded_rewards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, stdout, _ = export_legacy(tmp_path, monkeypatch, {"objective_name": "retired"})
    line = [json.loads(text) for text in stdout.splitlines()][2]
    assert code == 0 and line["objective"] == "retired" and line["status"] == "ok" and line["reward"] is not None


def test_a_hand_edited_metric_that_is_not_a_number_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, stdout, stderr = export_legacy(tmp_path, monkeypatch, {"val.sharpe": "high"})
    assert (code, stdout) == (1, "") and 'iter_2_results.json: windows.val.sharpe is "high"' in stderr
