"""The pool under faults: one evaluation's failure stays that evaluation's, never its neighbours'.

Several threads evaluate on one pool (the research loop's --parallel). Each test breaks one evaluation the
way a real fault would (its channel to the server failing, a kill that cannot be sent, a fork the machine
refuses, a server that is slow to start) and checks what the others, and the pool, went on to do.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_ohlcv

from autotrade.errors import CandidateError, SandboxError
from autotrade.evaluation import lookahead
from autotrade.sandbox import launch, protocol
from autotrade.sandbox.pool import CandidateOutput, Limits, SandboxPool, run_candidate

ROWS = 120
CUTS = [60, 90]  # two gate children, one cut each (Limits.workers is 2)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_ohlcv(ROWS, 3, "2015-01-01")


def block(full_s: float, gate_s: float, fail_at: int | None = None) -> str:
    """A deterministic block that sleeps `full_s` on the full frame and `gate_s` on each prefix (and raises at
    the prefix of `fail_at` bars)."""
    return textwrap.dedent(
        f"""
        def generate_features(df):
            if len(df) == {fail_at}:
                raise ValueError("no prefix of {fail_at} bars")
            pd.compat.sys.modules["time"].sleep({full_s} if len(df) == {ROWS} else {gate_s})
            df["x"] = df["Close"].rolling(5).mean()
            return df

        def strategy_logic(row):
            return 1 if row["x"] > row["Close"] else -1
        """
    )


STEADY = block(1.0, 0.0)  # the bystander: its full run is still going when the victim breaks


class _Faulty:
    """A channel whose sends fail, for the messages `fails` picks, as sends on a channel the server has dropped do."""

    def __init__(self, channel: socket.socket, fails: Callable[[dict[str, Any]], bool]) -> None:
        self._channel, self._fails = channel, fails

    def fileno(self) -> int:
        return self._channel.fileno()

    def send(self, data: bytes, *args: Any) -> int:
        self._check(data)
        return self._channel.send(data, *args)

    def sendmsg(self, buffers: list[bytes], *args: Any) -> int:
        self._check(buffers[0])
        return self._channel.sendmsg(buffers, *args)

    def _check(self, data: bytes) -> None:
        if self._fails(json.loads(data)):
            raise BrokenPipeError(errno.EPIPE, "injected: the channel is gone")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


def break_victim(pool: SandboxPool, fails: Callable[[dict[str, Any]], bool]) -> None:
    """Give the thread named "victim" a faulty channel; every other thread keeps a sound one."""
    original = pool._channel

    @contextlib.contextmanager
    def channel() -> Iterator[Any]:
        with original() as ours:
            yield _Faulty(ours, fails) if threading.current_thread().name == "victim" else ours

    pool._channel = channel  # type: ignore[method-assign]


def evaluate_both(pool: SandboxPool, victim_block: str, frame: pd.DataFrame) -> dict[str, Any]:
    """The bystander starts first; once its child runs, the victim evaluates. Each one's output or exception."""
    outcome: dict[str, Any] = {}

    def evaluate(name: str, source: str) -> None:
        try:
            outcome[name] = pool.run_candidate(source, frame, CUTS, Limits(timeout_s=20))
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever it was
            outcome[name] = exc

    slots = pool._slots._value  # type: ignore[attr-defined]
    bystander = threading.Thread(target=evaluate, args=("bystander", STEADY), name="bystander")
    bystander.start()
    _until(lambda: pool._slots._value < slots)  # type: ignore[attr-defined]
    victim = threading.Thread(target=evaluate, args=("victim", victim_block), name="victim")
    victim.start()
    for thread in (victim, bystander):
        thread.join(15)
    return outcome


def assert_same(alone: CandidateOutput, result: Any) -> None:
    assert isinstance(result, CandidateOutput), result
    assert np.array_equal(alone.signals, result.signals)
    assert alone.features.keys() == result.features.keys()
    assert all(np.array_equal(alone.features[c], result.features[c], equal_nan=True) for c in alone.features)
    assert [s.cut for s in result.steps] == CUTS


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    end = time.monotonic() + within
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.01)


def test_a_broken_channel_ends_only_its_own_evaluation_and_its_children(frame: pd.DataFrame) -> None:
    with SandboxPool(slots=4) as pool:
        alone = pool.run_candidate(STEADY, frame, CUTS, Limits(timeout_s=20))
        server = pool._server
        assert server is not None
        spawns = itertools.count()
        # The victim's second gate cannot be spawned, nor its first killed: only the server can end that child.
        break_victim(pool, lambda m: m["op"] == "kill" or (m["op"] == "spawn" and next(spawns) == 2))
        outcome = evaluate_both(pool, block(0.0, 20.0), frame)
        assert isinstance(outcome["victim"], SandboxError), outcome["victim"]  # the harness's fault, not the block's
        assert_same(alone, outcome["bystander"])
        assert pool._server is server and server.process.poll() is None  # the shared server lived on
        _until(lambda: children_of(server.process.pid) == [], within=3)  # the victim's 20 s gate child was killed


def test_a_kill_that_cannot_be_sent_keeps_the_verdict_and_the_other_evaluation(frame: pd.DataFrame) -> None:
    with SandboxPool(slots=4) as pool:
        alone = pool.run_candidate(STEADY, frame, CUTS, Limits(timeout_s=20))
        server = pool._server
        break_victim(pool, lambda m: m["op"] == "kill")
        outcome = evaluate_both(pool, block(0.0, 1.0, fail_at=60), frame)
        verdict = outcome["victim"]
        assert isinstance(verdict, CandidateError) and verdict.status == "lookahead", verdict
        assert "no prefix of 60 bars" in str(verdict)
        assert_same(alone, outcome["bystander"])
        assert pool._server is server


def test_a_refused_fork_fails_that_run_as_the_sandboxs_fault_and_the_server_keeps_serving(
    frame: pd.DataFrame,
) -> None:
    source = block(0.0, 0.0)
    with SandboxPool(faults=frozenset({"fork_once"})) as pool:
        with pytest.raises(SandboxError, match="fork"):
            pool.run_candidate(source, frame, CUTS, Limits(timeout_s=10))
        server = pool._server
        assert server is not None and server.process.poll() is None
        output = pool.run_candidate(source, frame, CUTS, Limits(timeout_s=10))
        assert [s.cut for s in output.steps] == CUTS
        assert pool._server is server  # the same server forked this one


def test_waiting_for_a_slot_while_a_gate_child_runs_is_not_charged_to_the_candidate(frame: pd.DataFrame) -> None:
    # Each gate needs 0.8 s of the 1.2 s left after the full run: both fit side by side, not one after the other.
    # The hog holds the pool's other slot until after the first gate is done, so the second gate waits for it.
    with SandboxPool(slots=2) as pool:
        pool.start()
        hog = threading.Thread(target=pool.run_candidate, args=(block(2.5, 0.0), frame, (), Limits(timeout_s=10)))
        hog.start()
        _until(lambda: pool._slots._value == 1)  # type: ignore[attr-defined]
        output = pool.run_candidate(block(0.8, 0.8), frame, CUTS, Limits(timeout_s=2.0, workers=2))
        hog.join()
    assert [s.cut for s in output.steps] == CUTS


def test_close_is_prompt_while_another_thread_waits_for_the_server_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)  # a server that never says it is ready
    log = tempfile.TemporaryFile()
    monkeypatch.setattr(
        launch, "start_fresh", lambda faults=frozenset(): launch.Server(process, ours, log, os.getpid())
    )
    pool = SandboxPool()
    errors: list[BaseException] = []

    def probe() -> None:
        try:
            pool.probe_layers()
        except BaseException as exc:  # noqa: BLE001 - the test inspects whatever it was
            errors.append(exc)

    waiter = threading.Thread(target=probe)
    waiter.start()
    time.sleep(0.3)
    closer = threading.Thread(target=pool.close, daemon=True)
    try:
        closer.start()
        closer.join(2)
        assert not closer.is_alive(), "close() waited for the server to start"
        waiter.join(2)
        assert len(errors) == 1 and isinstance(errors[0], SandboxError) and "closed" in str(errors[0])
        assert process.poll() is not None
    finally:
        theirs.close()  # lets a waiter stuck in recv go
        process.kill()
        process.wait()
        waiter.join(5)
        closer.join(5)


def test_a_worker_child_inherits_no_descriptor_up_to_the_descriptor_limit() -> None:
    # The highest descriptor a process can hold is one below its soft RLIMIT_NOFILE, which may exceed 65536.
    script = textwrap.dedent(
        """
        import os, resource
        from autotrade.sandbox import layers
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        high = os.dup2(os.open("/dev/null", os.O_RDONLY), soft - 1)
        low = os.dup2(os.open("/dev/null", os.O_RDONLY), 5)
        kept = os.dup2(os.open("/dev/null", os.O_RDONLY), 4)
        layers.close_descriptors_from(5)
        for fd, open_ in ((high, False), (low, False), (kept, True)):
            try:
                os.fstat(fd)
                assert open_, fd
            except OSError:
                assert not open_, fd
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_the_gate_tail_is_defined_once() -> None:
    assert not hasattr(lookahead, "TAIL_ROWS")  # read from the sandbox's protocol, not restated
    for function in (SandboxPool.run_candidate, run_candidate):
        assert inspect.signature(function).parameters["tail_rows"].default is protocol.TAIL_ROWS


def test_closing_the_pool_under_a_running_evaluation_is_the_sandboxs_failure_not_the_candidates(
    frame: pd.DataFrame,
) -> None:
    pool = SandboxPool()
    outcome: list[BaseException] = []

    def evaluate() -> None:
        try:
            pool.run_candidate(block(20.0, 0.0), frame, (), Limits(timeout_s=30))
        except BaseException as exc:  # noqa: BLE001 - the test inspects whatever it was
            outcome.append(exc)

    thread = threading.Thread(target=evaluate)
    thread.start()
    _until(lambda: pool._slots._value < (os.cpu_count() or 1))  # type: ignore[attr-defined]
    pool.close()
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], SandboxError), outcome
    assert "closed" in str(outcome[0])
