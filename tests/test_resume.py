"""Interrupt a run anywhere, resume it, and get every iteration exactly once."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from legacy_run import FIXTURE, fixture_records, legacy_copy
from openai_server import OpenAIServer, Recorded, Reply, Slow
from recording import RecordingReporter
from test_loop import (
    CANARY,
    KEY_ERROR,
    answer,
    assert_no_key_anywhere,
    good,
    iteration_of,
    records,
    settings,
    sma_block,
)  # noqa: F401

from autotrade.errors import ConfigError
from autotrade.propose.prompts import load_prompt_files
from autotrade.research.config import model_settings
from autotrade.research.loop import resume_run, start_run
from autotrade.research.population import Population, choose_parent, record_outcome
from autotrade.research.rundir import RunDir

# `autotrade` as the user runs it, from this interpreter (so it uses this checkout).
AUTOTRADE = [sys.executable, "-c", "import sys; from autotrade.cli.app import main; sys.argv[0] = 'autotrade'; main()"]


class Crash(BaseException):
    """Stands for the process dying: nothing in the loop catches it."""


def assert_consistent(run: Path, seed: int, size: int, max_iter: int) -> None:
    """Each iteration exactly once everywhere, and state equal to replaying the rules on the records."""
    found = records(run)
    assert [r["iteration"] for r in found] == list(range(max_iter))
    learnings = (run / "learnings.md").read_text()
    assert all(learnings.count(f"## Iteration {i} ") == 1 for i in range(max_iter))
    journal = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines() if line.strip()]
    committed = Counter(e["iteration"] for e in journal if e["event"] == "iteration_committed")
    assert committed == Counter(range(max_iter))
    population, streak, rng, parent = Population(size), 0, random.Random(seed), None
    for record in found:
        assert record["parent"] == parent
        step = record_outcome(
            population, streak, record["iteration"], record["objective"] if record["status"] == "ok" else None
        )
        population, streak = step.population, step.fail_streak
        parent = choose_parent(population, record["iteration"], step.entered, rng)
    state = json.loads((run / "state.json").read_text())
    assert (state["next_iteration"], state["status"]) == (max_iter, "finished")
    assert (state["population"], state["fail_streak"], state["next_parent"]) == (population.to_list(), streak, parent)
    assert not list(run.glob(f"iter_{max_iter}_*")) and not list(run.glob(".*.tmp"))
    assert_no_key_anywhere(run)


def per_iteration_replies(request: Recorded) -> Reply:
    """A distinct good strategy per iteration, every third one broken."""
    i = iteration_of(request)
    return Reply(KEY_ERROR if i % 3 == 0 else good(3 + i, 20 + 5 * i))


class CrashingReporter(RecordingReporter):
    """Dies when the loop enters a given phase of a given iteration."""

    def __init__(self, iteration: int, phase: str) -> None:
        super().__init__()
        self.at = (iteration, phase)

    def phase(self, iteration: int, text: str) -> None:
        if (iteration, text) == self.at:
            raise Crash(f"died at {self.at}")


CRASH_POINTS = [
    "before the model call",
    "after the reply is saved",
    "during evaluation",
    "after the results, before the commit",
    "after state.json, before its journal line",
    "after the commit",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_an_iteration_cut_short_anywhere_is_redone_once(
    point: str, openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server.default = per_iteration_replies
    reporter = RecordingReporter()
    if point == "before the model call":
        reporter = CrashingReporter(2, "asking the model")
    elif point == "during evaluation":
        reporter = CrashingReporter(2, "evaluating")
    else:
        event_or_state = {"after the reply is saved": "model_reply", "after the commit": "iteration_committed"}.get(
            point
        )
        journal, write_state = RunDir.journal, RunDir.write_state

        def crashing_journal(self: RunDir, event: str, **fields: Any) -> None:
            journal(self, event, **fields)
            if event == event_or_state and fields.get("iteration") == 2:
                raise Crash(point)

        def crashing_write_state(self: RunDir, state: Any) -> None:
            if point == "after the results, before the commit" and state.next_iteration == 3:
                raise Crash(point)
            write_state(self, state)
            if point == "after state.json, before its journal line" and state.next_iteration == 3:
                raise Crash(point)

        monkeypatch.setattr(RunDir, "journal", crashing_journal)
        monkeypatch.setattr(RunDir, "write_state", crashing_write_state)
    endpoint = model_settings(base_url=openai_server.base_url, environ={"OPENAI_API_KEY": CANARY})
    with pytest.raises(Crash):
        start_run(
            settings(tiny_data, max_iter=4, seed=5),
            endpoint,
            reporter,
            prompts=load_prompt_files(tmp_path),
            name="c",
            root=tmp_path / "train",
        )
    monkeypatch.undo()
    run = tmp_path / "train" / "c"
    resumed = resume_run(RunDir(run), RecordingReporter(), api_key=CANARY)
    assert (resumed.status, resumed.iterations) == ("finished", 4)
    assert_consistent(run, seed=5, size=3, max_iter=4)
    prompts = [r.body["messages"][-1]["content"] for r in openai_server.chat_requests if iteration_of(r) == 2]
    assert len(set(prompts)) == 1  # a redone iteration asks exactly the same question


# -- the real thing: SIGKILL a subprocess ---------------------------------------------------------------------

SLOW_BLOCK = sma_block(8, 40).replace(
    "def generate_features(df):\n",
    "def generate_features(df):\n    total = 0.0\n    for i in range(20_000_000):\n        total += i\n",
    1,
)


class Script:
    """The server side of the kill test: holds iteration 2's first reply, slows iteration 4's first evaluation.

    `process` is set by the test to the number of the process it launches, so asks are counted per process: the
    second process is killed right after iteration 3's results appear and may already have asked for iteration 4
    (held here until the kill, so that it gets no further), which is one more interrupted ask, not a duplicate.
    """

    def __init__(self) -> None:
        self.seen: Counter[int] = Counter()
        self.asks: Counter[tuple[int, int]] = Counter()  # (process, iteration) -> asks
        self.process = 1
        self.holding = threading.Event()

    def __call__(self, request: Recorded) -> Reply | Slow:
        i = iteration_of(request)
        self.seen[i] += 1
        self.asks[self.process, i] += 1
        if i == 2 and self.seen[i] == 1:
            self.holding.set()
            return Slow(60, then=Reply(good()))
        if i == 4 and self.process == 2:
            return Slow(60, then=Reply(good()))  # the kill is on its way
        if i == 4 and self.asks[3, 4] == 1 and self.process == 3:
            return Reply(answer(SLOW_BLOCK, "Slow features"))
        return per_iteration_replies(request)


def wait_for(condition: Any, what: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll until condition() holds; fail fast if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"autotrade exited with {process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def journal_has(run: Path, event: str, iteration: int) -> bool:
    path = run / "journal.jsonl"
    if not path.exists():
        return False
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event and entry.get("iteration") == iteration:
            return True
    return False


def test_sigkill_at_several_points_then_resume_loses_and_duplicates_nothing(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    script = Script()
    openai_server.default = script
    env = {**os.environ, "OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": CANARY}
    env.pop("OPENAI_MODEL", None)
    run = tmp_path / "train" / "k"

    processes: list[subprocess.Popen[bytes]] = []

    def launch(*args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [*AUTOTRADE, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        processes.append(process)
        return process

    def kill(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    # --repair 0: one ask per iteration, so every ask counted is a first ask or a redo.
    first = launch(
        "run", "--name", "k", "--max-iter", "6", "--seed", "9", "--repair", "0", "--quiet", "--data", str(tiny_data)
    )
    try:
        wait_for(script.holding.is_set, "the model call of iteration 2", first)
        kill(first)  # during the model call
        script.process = 2
        second = launch("resume", "k", "--quiet")
        wait_for(lambda: (run / "iter_3_results.json").exists(), "iteration 3's results", second)
        kill(second)  # right after an iteration's files appear
        script.process = 3
        third = launch("resume", "--quiet")  # the latest run
        # Its reply is journaled as it arrives; the candidate is written only at the commit, after the slow evaluation.
        wait_for(lambda: journal_has(run, "model_reply", 4), "iteration 4's reply", third)
        kill(third)  # during the evaluation
        assert not (run / "iter_4_trade.py").exists()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    script.process = 4
    done = subprocess.run(
        [*AUTOTRADE, "resume", "k", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finished: reached --max-iter after 6 iterations" in done.stdout
    assert_consistent(run, seed=9, size=3, max_iter=6)
    # Each interrupted iteration asked again, once: no process asks one iteration twice, iteration 2 is asked by
    # the first process (killed) and once more by the second, iteration 4 by the third (killed) and once by the last.
    assert max(script.asks.values()) == 1, script.asks
    assert (script.asks[1, 2], script.asks[2, 2], script.asks[3, 2]) == (1, 1, 0), script.asks
    assert (script.asks[3, 4], script.asks[4, 4]) == (1, 1), script.asks
    assert script.seen[2] == 2 and script.seen[4] in (2, 3)  # 3 when the second process had asked for it too

    again = subprocess.run(
        [*AUTOTRADE, "resume", "k"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and "already finished" in again.stdout
    assert_no_key_anywhere(run)


def test_resuming_an_unknown_run_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    done = subprocess.run([*AUTOTRADE, "resume", "nope"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no run named 'nope'" in done.stderr


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    script = Script()
    openai_server.default = script
    env = {**os.environ, "OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": CANARY}
    process = subprocess.Popen(
        [*AUTOTRADE, "run", "--name", "i", "--max-iter", "5", "--repair", "0", "--quiet", "--data", str(tiny_data)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal starts it: a suite run in the background (CI runs two at once) inherits SIGINT ignored,
        # and Python keeps a signal ignored at start-up, so Ctrl-C would never arrive.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(script.holding.is_set, "the model call of iteration 2", process)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, out + err
    assert "autotrade resume i" in err
    state = json.loads((tmp_path / "train" / "i" / "state.json").read_text())
    assert (state["status"], state["stop_reason"], state["next_iteration"]) == ("stopped", "interrupted", 2)
    assert not (tmp_path / "train" / "i" / "iter_2_response.md").exists()


def test_a_random_policy_run_resumes_into_the_same_run_as_an_uninterrupted_one(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from autotrade.cli.app import app

    def random_run(name: str, reporter: RecordingReporter) -> None:
        start_run(
            settings(tiny_data, max_iter=6, seed=4, policy="random"),
            None,
            reporter,
            prompts=load_prompt_files(tmp_path),
            name=name,
            root=tmp_path / "train",
        )

    random_run("whole", RecordingReporter())
    with pytest.raises(Crash):
        random_run("cut", CrashingReporter(3, "proposing"))
    monkeypatch.chdir(tmp_path)
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_MODEL": "some-model"}  # nothing listens; no note either
    outcome = CliRunner().invoke(app, ["resume", "cut", "--quiet"], env=env)
    assert outcome.exit_code == 0, outcome.output
    assert "finished: reached --max-iter after 6 iterations" in outcome.output and "OPENAI_MODEL" not in outcome.output
    whole, cut = records(tmp_path / "train" / "whole"), records(tmp_path / "train" / "cut")
    assert [(r["block"], r["objective"], r["parent"]) for r in cut] == [
        (r["block"], r["objective"], r["parent"]) for r in whole
    ]
    assert len({r["block"] for r in whole}) == 6
    states = [json.loads((tmp_path / "train" / name / "state.json").read_text()) for name in ("whole", "cut")]
    pinned = ("next_iteration", "population", "fail_streak", "next_parent", "rng", "status")
    assert [states[1][k] for k in pinned] == [states[0][k] for k in pinned]  # the RNG stream continued exactly
    journal = (tmp_path / "train" / "cut" / "journal.jsonl").read_text()
    assert (
        journal.count('"iteration_committed"') == 6
        and (tmp_path / "train" / "cut" / "learnings.md").read_text().count("## Iteration 3 ") == 1
    )


class InterruptingReporter(RecordingReporter):
    """Ctrl-C while an iteration is being evaluated, after its reply was saved."""

    def phase(self, iteration: int, text: str) -> None:
        if (iteration, text) == (2, "evaluating"):
            raise KeyboardInterrupt


def test_ctrl_c_during_an_iteration_says_it_will_be_redone_on_resume(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = per_iteration_replies
    said = InterruptingReporter()
    endpoint = model_settings(base_url=openai_server.base_url, environ={"OPENAI_API_KEY": CANARY})
    result = start_run(
        settings(tiny_data, max_iter=4),
        endpoint,
        said,
        prompts=load_prompt_files(tmp_path),
        name="c",
        root=tmp_path / "train",
    )
    assert result.stop_reason == "interrupted"
    assert "iteration 2 was interrupted before it committed: it will be redone on `autotrade resume c`" in said.notes
    assert not any("redoing it" in note for note in said.notes)


def test_resume_with_a_new_base_url_records_it_for_the_hints_and_later_resumes(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = per_iteration_replies
    with OpenAIServer() as gone, pytest.raises(Crash):  # the endpoint the run started with, shut down since
        gone.default = per_iteration_replies
        endpoint = model_settings(base_url=gone.base_url, environ={"OPENAI_API_KEY": CANARY})
        start_run(
            settings(tiny_data, max_iter=4),
            endpoint,
            CrashingReporter(2, "asking the model"),
            prompts=load_prompt_files(tmp_path),
            name="m",
            root=tmp_path / "train",
        )
    run = RunDir(tmp_path / "train" / "m")
    said = RecordingReporter()
    with pytest.raises(Crash):
        resume_run(run, CrashingReporter(3, "asking the model"), api_key=CANARY, base_url=openai_server.base_url)
    assert run.read_config()["model"]["base_url"] == openai_server.base_url
    resumed = resume_run(run, said, api_key=CANARY)  # no --base-url: the moved endpoint is the run's now
    assert resumed.status == "finished" and said.models[-1]["base_url"] == openai_server.base_url
    assert [e["base_url"] for e in run.read_journal() if e["event"] == "endpoint_moved"] == [openai_server.base_url]
    assert_no_key_anywhere(run.path)


def test_a_run_an_older_version_wrote_resumes_past_its_max_iter_with_its_attempts_in_the_prompt(
    openai_server: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from autotrade.cli.app import app

    run = legacy_copy(tmp_path)
    monkeypatch.chdir(tmp_path)
    openai_server.script([Reply(good(5, 20)), Reply(KEY_ERROR)])
    env = {"OPENAI_API_KEY": CANARY, "OPENAI_MODEL": ""}
    args = [
        "resume",
        "legacy",
        "--quiet",
        "--max-iter",
        "8",
        "--base-url",
        openai_server.base_url,
    ]  # the old one is gone
    outcome = CliRunner().invoke(app, args, env=env)
    assert outcome.exit_code == 0, outcome.output
    assert "finished: reached --max-iter after 8 iterations" in outcome.output
    state = json.loads((run / "state.json").read_text())
    assert (state["status"], state["next_iteration"]) == ("finished", 8)
    assert [json.loads((run / f"iter_{i}_results.json").read_text()) for i in range(6)] == fixture_records()
    new = [json.loads((run / f"iter_{i}_results.json").read_text()) for i in (6, 7)]
    assert [(r["iteration"], r["parent"], r["status"]) for r in new] == [(6, 2, "ok"), (7, 6, "runtime_error")]
    assert list(new[0]) == list(fixture_records()[2])  # a new record has the keys, in the order, of an old one
    first = openai_server.chat_requests[0].body["messages"][-1]["content"]
    assert "# Iteration 6 (the run stops after iteration 7)" in first
    assert "Iteration 5 (parent 0) FAILED with status `runtime_error` (KeyError)" in first  # the last old attempt
    assert "## Iteration 4 (parent 0) — rejected" in first and "1. iteration 0 — val_return" in first
    learnings = (run / "learnings.md").read_text()
    assert [learnings.count(f"## Iteration {i} ") for i in range(8)] == [1] * 8
    assert RunDir(run).read_config()["settings"]["max_iter"] == 8
    assert_no_key_anywhere(run)


def test_resume_can_raise_a_runs_max_iter_but_never_lower_it(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "legacy")
    with pytest.raises(
        ConfigError, match=r"--max-iter 5: run 'legacy' already runs to 6 iterations; it can only be raised"
    ):
        resume_run(RunDir(tmp_path / "legacy"), RecordingReporter(), max_iter=5)
    assert json.loads((tmp_path / "legacy" / "config.json").read_text())["settings"]["max_iter"] == 6
