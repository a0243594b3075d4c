"""--parallel K and several endpoints: proposals in flight at once, committed in iteration order, resumed exactly."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from openai_server import OpenAIServer, Recorded, Reply, Slow
from recording import RecordingReporter
from test_loop import CANARY, KEY_ERROR, good, iteration_of, records, settings, start
from test_resume import Crash, CrashingReporter

from autotrade.propose.prompts import load_prompt_files
from autotrade.research.config import model_settings
from autotrade.research.loop import resume_run, start_run
from autotrade.research.population import Population, record_outcome
from autotrade.research.rundir import RunDir


def replies_by_iteration(request: Recorded) -> Reply | Slow:
    """A distinct strategy per iteration, every third one broken, each after a short think."""
    i = iteration_of(request)
    return Slow(0.3, Reply(KEY_ERROR if i % 3 == 0 else good(3 + i, 20 + 5 * i)))


def journal(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines() if line.strip()]


def overlapping(requests: list[Recorded], seconds: float) -> int:
    """The most requests that arrived within `seconds` of one another (each was held that long)."""
    times = sorted(r.at for r in requests)
    return max((sum(1 for t in times if start <= t < start + seconds) for start in times), default=0)


def test_parallel_proposals_are_in_flight_together_and_commit_in_iteration_order(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = replies_by_iteration
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=8, parallel=3)
    assert (result.status, result.iterations) == ("finished", 8)
    assert overlapping(openai_server.chat_requests, 0.3) >= 2  # a second request went out before the first answered
    committed = [e["iteration"] for e in journal(tmp_path / "train" / "t") if e["event"] == "iteration_committed"]
    assert committed == list(range(8))
    assert [r["iteration"] for r in records(tmp_path / "train" / "t")] == list(range(8))


def test_each_parallel_proposal_is_asked_from_the_state_committed_parallel_iterations_before(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = replies_by_iteration
    start(openai_server, tmp_path, tiny_data, max_iter=9, parallel=3)
    found = records(tmp_path / "train" / "t")
    for record in found[1:]:
        basis = found[max(0, record["iteration"] - 3)]
        assert record["parent"] == basis["next_parent"], record["iteration"]
    prompts = {iteration_of(r): r.body["messages"][-1]["content"] for r in openai_server.chat_requests}
    # Iteration 7 was asked after iteration 4 committed: 4's outcome is in its prompt, 5's and 6's are not.
    assert "Iteration 4" in prompts[7] and "## Iteration 5 " not in prompts[7] and "## Iteration 6 " not in prompts[7]


def test_the_population_and_failure_streak_follow_the_committed_order(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = replies_by_iteration
    start(openai_server, tmp_path, tiny_data, max_iter=8, parallel=4)
    population, streak = Population(3), 0
    for record in records(tmp_path / "train" / "t"):
        step = record_outcome(population, streak, record["iteration"], record["objective"])
        population, streak = step.population, step.fail_streak
        assert (record["population"], record["fail_streak"]) == (population.iterations, streak)


def test_max_fails_stops_a_parallel_run_and_drops_the_iterations_still_in_flight(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = lambda request: Slow(0.2, Reply(KEY_ERROR))
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=20, max_fails=3, parallel=4)
    assert (result.stop_reason, result.iterations) == ("max_fails", 4)  # the baseline, then three failures
    run = tmp_path / "train" / "t"
    assert not list(run.glob("iter_4_*")) and not list(run.glob("iter_5_*"))
    assert len(openai_server.chat_requests) >= 4  # iterations past the stop were asked, then dropped


def test_a_parallel_run_interrupted_then_resumed_equals_one_that_ran_through(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def random_run(name: str, reporter: RecordingReporter) -> None:
        start_run(
            settings(tiny_data, max_iter=9, seed=4, policy="random", parallel=3),
            None,
            reporter,
            prompts=load_prompt_files(tmp_path),
            name=name,
            root=tmp_path / "train",
        )

    random_run("whole", RecordingReporter())
    with pytest.raises(Crash):
        random_run("cut", CrashingReporter(5, "evaluating"))
    resumed = resume_run(RunDir(tmp_path / "train" / "cut"), RecordingReporter())
    assert (resumed.status, resumed.iterations) == ("finished", 9)
    whole, cut = records(tmp_path / "train" / "whole"), records(tmp_path / "train" / "cut")
    keys = ("block", "objective", "parent", "population", "fail_streak", "next_parent")
    assert [[r[k] for k in keys] for r in cut] == [[r[k] for k in keys] for r in whole]
    states = [json.loads((tmp_path / "train" / n / "state.json").read_text()) for n in ("whole", "cut")]
    assert states[0]["rng"] == states[1]["rng"]
    committed = [e["iteration"] for e in journal(tmp_path / "train" / "cut") if e["event"] == "iteration_committed"]
    assert committed == list(range(9))  # nothing committed twice


def test_requests_spread_over_several_endpoints(tmp_path: Path, tiny_data: Path) -> None:
    with OpenAIServer() as one, OpenAIServer() as two:
        one.default = two.default = replies_by_iteration
        endpoint = model_settings(base_url=f"{one.base_url},{two.base_url}", environ={"OPENAI_API_KEY": CANARY})
        result, _ = start(one, tmp_path, tiny_data, endpoint=endpoint, max_iter=7, parallel=2)
        assert result.status == "finished"
        assert len(one.chat_requests) >= 2 and len(two.chat_requests) >= 2
        assert len(one.chat_requests) + len(two.chat_requests) == 6
    config = json.loads((tmp_path / "train" / "t" / "config.json").read_text())
    assert config["model"]["base_url"] == f"{one.base_url},{two.base_url}"


def test_an_endpoint_that_does_not_answer_at_the_start_is_skipped_with_one_line(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = replies_by_iteration
    dead = "http://127.0.0.1:9/v1"  # nothing listens
    endpoint = model_settings(base_url=f"{dead},{openai_server.base_url}", environ={"OPENAI_API_KEY": CANARY})
    result, reporter = start(openai_server, tmp_path, tiny_data, endpoint=endpoint, max_iter=3)
    assert result.status == "finished"
    skipped = [n for n in reporter.notes if "127.0.0.1:9" in n]
    assert len(skipped) == 1 and "skipped" in skipped[0] and "connection refused" in skipped[0]
    config = json.loads((tmp_path / "train" / "t" / "config.json").read_text())
    assert config["model"]["base_url"].startswith(dead)  # recorded: resume tries it again


def test_an_endpoint_that_dies_during_a_run_is_skipped_and_the_run_goes_on(tmp_path: Path, tiny_data: Path) -> None:
    with OpenAIServer() as one, OpenAIServer() as two:
        one.default = two.default = replies_by_iteration
        stopped = threading.Event()

        class StopOneAfterIteration2(RecordingReporter):
            def iteration(self, attempt, standing) -> None:  # noqa: ANN001 - the Reporter protocol's
                super().iteration(attempt, standing)
                if attempt.iteration == 2 and not stopped.is_set():
                    one.stop()
                    stopped.set()

        endpoint = model_settings(base_url=f"{one.base_url},{two.base_url}", environ={"OPENAI_API_KEY": CANARY})
        reporter = StopOneAfterIteration2()
        result, _ = start(one, tmp_path, tiny_data, endpoint=endpoint, reporter=reporter, max_iter=7, parallel=2)
        assert (result.status, result.iterations) == ("finished", 7)
        skipped = [n for n in reporter.notes if one.base_url.removesuffix("/v1") in n and "skipped" in n]
        assert len(skipped) == 1
        assert not any(r["status"] == "runtime_error" and not r.get("block") for r in records(tmp_path / "train" / "t"))


def test_endpoints_serving_different_models_are_refused_before_the_run_starts(tmp_path: Path, small_data: Path) -> None:
    from autotrade.errors import ConfigError

    with OpenAIServer() as one, OpenAIServer(models=[{"id": "other-model", "object": "model"}]) as two:
        endpoint = model_settings(base_url=f"{one.base_url},{two.base_url}", environ={"OPENAI_API_KEY": CANARY})
        with pytest.raises(ConfigError, match="serve different models"):
            start(one, tmp_path, small_data, endpoint=endpoint, max_iter=3)
    assert not (tmp_path / "train" / "t").exists()
