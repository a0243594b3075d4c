"""Budgets: --budget-tokens and --budget-minutes end a run cleanly between iterations; resume raises them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from legacy_run import FIXTURE
from openai_server import OpenAIServer, Recorded, Reply
from recording import RecordingReporter
from test_loop import CANARY, KEY_ERROR, iteration_of, settings, start

from autotrade.cli.research import ending_lines
from autotrade.errors import ConfigError
from autotrade.propose.prompts import load_prompt_files
from autotrade.research.budget import exhausted, raise_limits
from autotrade.research.config import RunSettings
from autotrade.research.loop import resume_run, start_run
from autotrade.research.rundir import RunDir


def priced(request: Recorded) -> Reply:
    """Each reply 1,200 tokens; its strategy raises at once (what it costs is under test, not what it finds)."""
    return Reply(KEY_ERROR, usage=(1000, 200))


def journal(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines() if line.strip()]


def test_a_budget_is_reached_by_the_committed_totals() -> None:
    spent = {"prompt_tokens": 1500, "completion_tokens": 500, "wall_s": 119.0}
    assert exhausted(RunSettings(budget_tokens=2001, budget_minutes=2), spent) is None
    assert exhausted(RunSettings(budget_tokens=2000), spent) == "budget_tokens"
    assert exhausted(RunSettings(budget_minutes=119 / 60), spent) == "budget_minutes"
    assert exhausted(RunSettings(), spent) is None  # an old config.json: no budget


def test_a_config_written_before_budgets_reads_as_no_budget() -> None:
    raw = json.loads((FIXTURE / "config.json").read_text())["settings"]
    assert "budget_tokens" not in raw and "budget_minutes" not in raw
    pinned = RunSettings.from_dict(raw)
    assert (pinned.budget_tokens, pinned.budget_minutes) == (None, None)


def test_resume_raises_a_budget_but_never_lowers_or_invents_one() -> None:
    pinned = RunSettings(budget_tokens=2000)
    raised, changed = raise_limits(pinned, "t", budget_tokens=3000, budget_minutes=None, max_iter=None)
    assert (raised.budget_tokens, changed) == (3000, {"budget_tokens": 3000})
    with pytest.raises(ConfigError, match="--budget-tokens 1000: run 't' already runs to 2000 tokens"):
        raise_limits(pinned, "t", budget_tokens=1000)
    with pytest.raises(ConfigError, match="--budget-minutes 5: run 't' runs without that budget"):
        raise_limits(pinned, "t", budget_minutes=5.0)


def test_a_token_budget_ends_the_run_between_iterations_and_resume_extends_it(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = priced
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=20, parallel=2, budget_tokens=1000)
    # The baseline costs nothing, iteration 1 1,200 tokens: the run ends there, with iteration 2 in flight.
    assert (result.status, result.stop_reason, result.iterations) == ("finished", "budget_tokens", 2)
    assert ending_lines(result) == [
        "run t finished: spent its token budget (1,200 of 1,000 tokens, prompt + completion) after 2 iterations; "
        f"best in {result.path}/best_trade.py; to go on: `autotrade resume t --budget-tokens N` with a larger N"
    ]  # the baseline is the best
    run = RunDir(tmp_path / "train" / "t")
    assert resume_run(run, RecordingReporter(), api_key=CANARY).already_finished  # the same budget: nothing to do

    resumed = resume_run(run, RecordingReporter(), api_key=CANARY, budget_tokens=2000)
    assert (resumed.stop_reason, resumed.iterations) == ("budget_tokens", 3)
    assert run.read_config()["settings"]["budget_tokens"] == 2000
    assert [e["budget_tokens"] for e in journal(run.path) if e["event"] == "budget_tokens_raised"] == [2000]
    asked = [iteration_of(r) for r in openai_server.chat_requests]
    assert asked.count(2) == 2 and asked.count(3) == 1  # dropped at the first stop, redone; 3 dropped at the second
    state = json.loads((run.path / "state.json").read_text())
    assert state["totals"]["prompt_tokens"] + state["totals"]["completion_tokens"] == 2400


def test_research_time_adds_up_over_resumes_and_ends_the_run(tmp_path: Path, tiny_data: Path) -> None:
    tiny = 1e-9  # minutes: less than any commit takes
    result = start_run(
        settings(tiny_data, policy="random", max_iter=2, budget_minutes=tiny),
        None,
        RecordingReporter(),
        prompts=load_prompt_files(tmp_path),
        name="m",
        root=tmp_path / "train",
    )
    # Setting the run up is research time too: the budget is spent before the baseline.
    assert (result.stop_reason, result.iterations) == ("budget_minutes", 0)
    run = RunDir(tmp_path / "train" / "m")
    # Twice the budget is still less than the time already spent: the run does not start over from zero.
    assert resume_run(run, RecordingReporter(), budget_minutes=2 * tiny).already_finished
    done = resume_run(run, RecordingReporter(), budget_minutes=60.0)
    assert (done.stop_reason, done.iterations) == ("max_iter", 2)
    commits = [e["wall_s"] for e in journal(run.path) if e["event"] == "iteration_committed"]
    assert len(commits) == 2 and commits == sorted(commits) and commits[0] > tiny * 60
