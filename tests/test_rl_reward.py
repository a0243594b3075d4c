"""autotrade.rl.reward_function: TRL's reward signature over the harness, on known completions, in parallel."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from test_loop import LOOKAHEAD, REJECTED, answer, good, sma_block

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.prepared import load_prepared
from autotrade.errors import ConfigError
from autotrade.evaluation.score import Score
from autotrade.rl import reward_function
from autotrade.rl.environment import SCORE_KEY, rubric_functions
from autotrade.rl.reward import RewardFunction, completion_text

SYNTAX_ERROR = answer(
    "def generate_features(df)\n    return df\n\n\ndef strategy_logic(row):\n    return 1\n", "Broken"
)
# Cut at the token limit inside its code block: what is there would even parse, but it is not the whole reply.
TRUNCATED = "Here is my proposal.\n\n```python\n" + sma_block(5, 20)[:120]
# The parent (by default the packaged baseline) resubmitted with a comment: it would earn the parent's own score.
COPY = answer("# Unchanged, because it works.\n" + extract_block(baseline_source()), "Keep the baseline")
KNOWN = {
    "ok": good(5, 20),
    "lookahead": LOOKAHEAD,
    "syntax_error": SYNTAX_ERROR,
    "rejected": REJECTED,
    "truncated": TRUNCATED,
    "duplicate": COPY,
}


@pytest.fixture(scope="module")
def reward(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> RewardFunction:
    log = tmp_path_factory.mktemp("reward") / "reward.jsonl"
    with reward_function(load_prepared(tiny_data), "rubric", log_path=log, max_completion_length=64) as made:
        yield made


@pytest.fixture(scope="module")
def batch(reward: RewardFunction) -> dict[str, tuple[float, Score]]:
    """The known completions scored in one call, as TRL makes it: the truncated one has the trainer's limit of
    token ids, the others fewer."""
    ids = [[0] * (64 if name == "truncated" else 10) for name in KNOWN]
    logged: dict[str, list[float]] = {}
    rewards = reward(
        prompts=["…"] * len(KNOWN),
        completions=list(KNOWN.values()),
        completion_ids=ids,
        log_metric=lambda name, value: logged.setdefault(name, []).append(value),
    )
    reward.logged = logged  # type: ignore[attr-defined]
    return {name: (value, score) for name, value, score in zip(KNOWN, rewards, reward.last, strict=True)}


def test_a_working_strategy_is_rewarded_with_its_rubric_score(batch: dict[str, tuple[float, Score]]) -> None:
    value, score = batch["ok"]
    assert score.status == "ok" and score.passed and value == score.total and 0.0 < value <= 1.0


@pytest.mark.parametrize("name", ["lookahead", "syntax_error", "rejected", "truncated", "duplicate"])
def test_a_gated_completion_scores_the_floor_with_its_status(batch: dict[str, tuple[float, Score]], name: str) -> None:
    value, score = batch[name]
    assert (value, score.status, score.passed) == (0.0, name, False)


def test_the_components_go_to_the_trainers_log_and_the_jsonl_file(reward: RewardFunction, batch: dict) -> None:
    assert reward.logged["autotrade/status/ok"] == [pytest.approx(1 / len(KNOWN))]  # type: ignore[attr-defined]
    assert "autotrade/sharpe" in reward.logged and "autotrade/gate/no_lookahead" in reward.logged  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in reward.log_path.read_text().splitlines()]  # type: ignore[union-attr]
    assert [line["status"] for line in lines[-len(KNOWN) :]] == list(KNOWN)
    assert set(lines[-len(KNOWN)]["components"]) == {
        "sharpe",
        "beats_buy_and_hold",
        "drawdown",
        "exposure",
        "costs",
        "trades",
    }


def test_chat_completions_score_like_their_text(reward: RewardFunction, batch: dict) -> None:
    messages = [[{"role": "assistant", "content": [{"type": "text", "text": KNOWN["ok"]}]}]]
    assert reward(prompts=[[{"role": "user", "content": "…"}]], completions=messages) == [batch["ok"][0]]


def test_anything_that_is_not_a_reply_scores_the_floor_without_raising(reward: RewardFunction) -> None:
    assert reward(prompts=[None, None, None], completions=[None, 42, [{"role": "assistant"}]]) == [0.0, 0.0, 0.0]


def test_completion_text_joins_the_assistant_turns_only() -> None:
    turns = [
        {"role": "assistant", "content": "a"},
        {"role": "tool", "content": "x"},
        {"role": "assistant", "content": "b"},
    ]
    assert completion_text(turns) == "a\nb"


def test_an_unbounded_objective_needs_a_floor(tiny_data: Path) -> None:
    with pytest.raises(ConfigError, match="unbounded below.*floor"):
        reward_function(load_prepared(tiny_data), "val_sharpe")


def test_the_composite_reward_gives_invalid_code_minus_one(tiny_data: Path) -> None:
    with reward_function(load_prepared(tiny_data), "composite", workers=2) as composite:
        rewards = composite(prompts=["…"] * 2, completions=[SYNTAX_ERROR, good(5, 20)])
        funcs, weights = rubric_functions(composite)
        for score, expected in zip(composite.last, rewards, strict=True):  # a verifiers rubric adds up to it too
            values = [asyncio.run(f(completion="", state={SCORE_KEY: score})) for f in funcs]
            assert sum(w * v for w, v in zip(weights, values, strict=True)) == pytest.approx(expected)
    assert rewards[0] == -1.0 and -0.7 < rewards[1] < 0.7 and math.isfinite(rewards[1])


def test_a_dataset_naming_an_asset_the_reward_lacks_is_refused(reward: RewardFunction) -> None:
    with pytest.raises(ConfigError, match="names asset 'goog'"):
        reward(prompts=["…"], completions=[KNOWN["ok"]], asset=["goog"])


def test_a_broken_sandbox_scores_the_floor_and_says_why(tiny_data: Path) -> None:
    with reward_function(load_prepared(tiny_data), "rubric", workers=1) as broken:
        broken.pool.close()  # what a dead fork server looks like to the reward
        assert broken(prompts=["…"], completions=[KNOWN["ok"]]) == [0.0]
    assert broken.last[0].status == "harness_error" and "SandboxError" in broken.last[0].message


@pytest.mark.parametrize("name", list(KNOWN))
def test_the_verifiers_rubrics_weighted_functions_add_up_to_the_reward(
    reward: RewardFunction, batch: dict[str, tuple[float, Score]], name: str
) -> None:
    value, score = batch[name]
    state = {SCORE_KEY: score}  # the rollout's one evaluation, as the first function leaves it
    funcs, weights = rubric_functions(reward)
    values = {f.__name__: asyncio.run(f(completion=KNOWN[name], state=state)) for f in funcs}
    assert sum(w * values[f.__name__] for f, w in zip(funcs, weights, strict=True)) == pytest.approx(value)
    assert {"sharpe", "trades", "gated", "gate_no_lookahead"} <= set(values)
    assert values["gate_no_lookahead"] == (0.0 if name == "lookahead" else 1.0)


def test_copies_of_the_parent_are_scored_when_a_caller_allows_them(tiny_data: Path) -> None:
    with reward_function(load_prepared(tiny_data), "rubric", workers=1, refuse_copies=False) as lenient:
        (value,) = lenient(prompts=["…"], completions=[COPY])
    assert lenient.last[0].status == "ok" and value > 0.0
