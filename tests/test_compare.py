"""`autotrade compare` on equal footing: runs cut at the same iterations, tokens or minutes, then measured alike."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from legacy_run import legacy_copy
from openai_server import OpenAIServer, Reply
from recording import RecordingReporter
from rich.console import Console
from test_cli_report import invoke, text_of
from test_loop import KEY_ERROR, NO_CODE

from autotrade.errors import ConfigError
from autotrade.propose.prompts import load_prompt_files
from autotrade.report.compare import Footing, compare_run, counted, fell_short
from autotrade.report.render import footing_table
from autotrade.research.attempt import Attempt, Turn
from autotrade.research.config import RunSettings, model_settings
from autotrade.research.loop import start_run
from autotrade.research.rundir import RunDir
from autotrade.sandbox.pool import SandboxPool
from autotrade.status import Status


def priced(i: int, tokens: int) -> Attempt:
    return Attempt(iteration=i, status=Status.OK, turns=(Turn(prompt_tokens=tokens),) if tokens else ())


def test_a_token_footing_counts_the_iterations_completed_within_it() -> None:
    attempts = [priced(0, 0), priced(1, 400), priced(2, 600), priced(3, 500)]
    assert counted(attempts, Footing(tokens=1000), {}) == 3  # 1,000 exactly: iteration 2 is within
    assert counted(attempts, Footing(tokens=999), {}) == 2
    assert counted(attempts, Footing(iterations=9), {}) == 4 == counted(attempts, Footing(), {})
    assert fell_short(attempts, Footing(tokens=1501), {}) and not fell_short(attempts, Footing(tokens=1500), {})


def test_a_time_footing_reads_each_commits_research_time_and_says_when_a_run_lacks_it() -> None:
    attempts = [priced(0, 0), priced(1, 400), priced(2, 600)]
    assert counted(attempts, Footing(minutes=1), {0: 2.0, 1: 59.5, 2: 61.0}) == 2
    with pytest.raises(ConfigError, match="iteration 1 has no research time in the journal"):
        counted(attempts, Footing(minutes=1), {0: 2.0})


def test_one_footing_at_a_time_is_a_one_line_error() -> None:
    outcome = invoke("compare", "a", "b", "--iterations", "2", "--tokens", "900")
    assert outcome.exit_code != 0 and "--iterations and --tokens: choose one footing" in text_of(outcome)


def loopback_run(root: Path, data: Path, name: str, model: str, replies: list[Reply]) -> RunDir:
    """A run of len(replies) + 1 iterations with `model` at a loopback server of its own."""
    listed = [{"id": model, "object": "model", "owned_by": "loopback", "max_model_len": 32768}]
    with OpenAIServer(models=listed) as server:
        server.script(replies)
        result = start_run(
            RunSettings(max_iter=len(replies) + 1, max_fails=20, seed=7, data_dir=str(data), repair=0),
            model_settings(base_url=server.base_url, environ={"OPENAI_API_KEY": "sk-test"}),
            RecordingReporter(),
            prompts=load_prompt_files(root),
            name=name,
            root=root / "train",
        )
    return RunDir(result.path)


def test_a_run_written_before_research_time_was_recorded_cannot_be_cut_by_minutes(
    tmp_path: Path, sandbox_pool: SandboxPool
) -> None:
    leg = compare_run(RunDir(legacy_copy(tmp_path)), Footing(minutes=5), sandbox_pool)
    assert (leg.committed, leg.counted) == (6, 0)
    assert leg.problem is not None and "iteration 0 has no research time" in leg.problem


def test_compare_cuts_the_longer_run_to_the_iterations_of_the_shorter_one(
    tmp_path: Path, tiny_data: Path, sandbox_pool: SandboxPool
) -> None:
    thinking = "Let me weigh a faster average. " * 10
    local = loopback_run(
        tmp_path,
        tiny_data,
        "local",
        "local-30b",
        [Reply(NO_CODE, usage=(900, 100)), Reply(KEY_ERROR, usage=(1000, 200))],
    )
    frontier = loopback_run(
        tmp_path, tiny_data, "frontier", "frontier-x", [Reply(KEY_ERROR, reasoning=thinking, usage=(800, 300))]
    )
    legs = [compare_run(run, Footing(iterations=2), sandbox_pool) for run in (local, frontier)]
    cut, other = legs
    # local's third iteration (its only strategy that ran) lies beyond the cut: one trial, the baseline, is left.
    assert (cut.committed, cut.counted, cut.best_iteration, cut.tokens) == (3, 2, 0, 1000)
    assert cut.overfitting is not None and (cut.overfitting.n_trials, cut.overfitting.best_iteration) == (1, 0)
    assert (cut.turns, cut.parse_failures, cut.ok_proposals) == (1, 1, 0)
    # frontier's KeyError ran: a second trial beside its baseline, though not an ok one.
    assert (other.counted, other.trials.ran, other.trials.ok, other.reasoning_chars) == (2, 2, 1, len(thinking.strip()))
    console = Console(file=io.StringIO(), width=200)
    console.print(footing_table(legs, Footing(iterations=2)))
    shown = console.file.getvalue()
    for part in ("On equal footing: the first 2 iterations", "local-30b", "frontier-x", "2 of 3", "100% (1/1 replies)"):
        assert part in shown
