"""The harness side of the sandbox: a pool that runs candidates in isolated worker children.

Processes (one module each):
- harness (trusted, this module): `SandboxPool.run_candidate` sends each worker child its slice of
  the frame and the code over a pipe, reads back a length-prefixed JSON header plus raw float64
  bytes (protocol.py; nothing is unpickled), validates lengths and values, and computes
  everything else itself.
- fork server (server.py): a fresh `python -I` the pool starts on first use (launch.py) and stops
  on close; it forks one child per run and enforces the wall-clock limit.
- worker child (child.py): applies its layers (layers.py), runs the block (execute.py) on its
  frame, writes the result and exits.

Each run (the full frame and every look-ahead prefix) is its own fresh child: no state survives
between runs. A pool serves several evaluations at once, from several threads: each takes its own
channel to the server, and children running at once across all of them are bounded by the pool's
slots (default: one per core). Within one evaluation runs go `Limits.workers` at a time; the first
failure cancels the rest. Callers own their pool: a command or run makes one and closes it (or
uses it as a context manager); a closed pool refuses new work with a SandboxError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import select
import selectors
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from autotrade.contract import SIGNALS
from autotrade.errors import CandidateError, SandboxError
from autotrade.sandbox import launch, layers
from autotrade.sandbox.execute import bar_label
from autotrade.sandbox.protocol import (
    HEADER_CAP,
    PREFIX,
    SET_UP,
    TAIL_ROWS,
    encode_frame,
    full_job,
    gate_job,
    job_header,
    pack,
    unpack,
)
from autotrade.status import Status
from autotrade.untrusted import clean_text, first_unsafe

STATUSES = frozenset(status.value for status in Status if status.from_worker)  # what a child may report


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits for every worker run (the full frame and each look-ahead prefix)."""

    timeout_s: float = 60.0  # wall-clock seconds per run; the child is SIGKILLed past it
    memory_mb: int = 4096  # address space per run
    output_bytes: int = 64 * 1024  # stdout+stderr kept per run; the rest is read and dropped
    workers: int = 2  # runs at once (each may use memory_mb)
    max_columns: int = 512  # feature columns a run may return
    # Layers to leave off, to measure what the others stop (tests only): any of
    # "audit_hook", "seccomp", "nobody". Namespaces are per server and always on where possible.
    disabled_layers: frozenset[str] = frozenset()

    @property
    def cpu_s(self) -> int:
        """CPU-seconds rlimit: a backstop just above the wall-clock limit."""
        return math.ceil(self.timeout_s) + 1


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One run of the candidate on the first `rows` bars of the frame."""

    rows: int
    columns: tuple[str, ...]  # every column generate_features returned, in order
    features: Mapping[str, np.ndarray]  # column -> float64[rows] (non-numeric columns as value hashes)
    signals: np.ndarray  # float64[rows] in {-1, 0, 1}


@dataclasses.dataclass(frozen=True)
class GateStep:
    """One look-ahead prefix run: the features of rows [start, cut) computed on the first `cut` bars only."""

    cut: int
    start: int
    columns: tuple[str, ...]
    features: Mapping[str, np.ndarray]  # column -> float64[cut - start]
    signal_start: int  # the previous cut of its gate child: signals cover the bars this prefix added
    signals: np.ndarray  # float64[cut - signal_start], computed on the first prefix holding each bar


@dataclasses.dataclass(frozen=True)
class CandidateOutput:
    """The full-frame run plus the look-ahead gate's prefix runs; the harness computes everything else."""

    rows: int
    columns: tuple[str, ...]
    features: Mapping[str, np.ndarray]
    signals: np.ndarray
    steps: tuple[GateStep, ...]  # ascending cuts
    output: str  # the full run's captured stdout/stderr, truncated to Limits.output_bytes
    warnings: tuple[str, ...]  # forgiven mistakes, e.g. a generate_features without `return df`
    timings: Mapping[str, float]  # seconds: run_s (full run), gate_s (every prefix, one child), total_s


CutPlan = Sequence[int] | Callable[[np.ndarray, float], Sequence[int]]  # (signals, generate_features' seconds)


class SandboxPool:
    """A fork server and the evaluations running on it; several at once from several threads.

    Lazy: the server starts on the first run (about 0.3 s, overlapping the caller's work when it
    calls `start` early) and is restarted if it dies. `slots` bounds the worker children running
    at once across every evaluation of the pool (default: one per core). `faults` names facilities
    the server refuses as a machine without them would (layers.FAULTS; tests only). Closing the
    pool stops its server and every child still running; a closed pool refuses new work.
    """

    def __init__(self, slots: int | None = None, faults: frozenset[str] = frozenset()) -> None:
        unknown = set(faults) - set(layers.FAULTS)
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
        self.faults = frozenset(faults)
        self._slots = threading.BoundedSemaphore(max(1, slots or os.cpu_count() or 1))
        self._lock = threading.Lock()  # the server's life and the idle channels; never held across a run
        self._job_ids = itertools.count()  # never reused: a late report about an old child matches nothing
        self._server: launch.Server | None = None
        self._ready = False
        self._idle: list[socket.socket] = []  # channels to the current server that no evaluation holds
        self._closed = False
        self.setup_report: dict[str, bool | str] = {}  # what the server's set-up found, once it is ready

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        """Launch the server now without waiting for it (it imports pandas while the caller works)."""
        with self._lock:
            self._ensure_started()

    def close(self) -> None:
        """Stop the server (its children die with it); later runs raise SandboxError. Prompt from any thread."""
        self._closed = True  # before the lock: a thread waiting for the server to start sees it and lets go
        with self._lock:
            self._stop()

    def run_candidate(
        self,
        source: str,
        frame: pd.DataFrame,
        cut_points: CutPlan = (),
        limits: Limits = Limits(),
        tail_rows: int = TAIL_ROWS,
        whole: Sequence[int] = (),
    ) -> CandidateOutput:
        """Run the block on `frame` in one sandboxed child, then on each prefix `frame.iloc[:cut]` in another.

        `cut_points` is a list of prefix lengths, or a function of the full run's signals and of its
        generate_features time giving one (lookahead.cut_plan). The gate child runs the prefixes in ascending
        order and receives each prefix's new bars only after it has answered for the previous one, so it never
        holds a later bar; it returns the features of the last `tail_rows` rows of each prefix (all rows at the
        cuts in `whole`). One wall-clock budget, limits.timeout_s, covers both children (time spent waiting
        for a free slot of the pool is not counted).

        Raises CandidateError with status syntax_error, runtime_error, memory, timeout, bad_signal or
        lookahead (module state carried into signals) for the full run; a prefix run that fails where
        the full run did not is status lookahead. The comparison itself is lookahead.check_lookahead.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + limits.timeout_s
        rows = len(frame)
        encoded = encode_frame(frame)
        full = _Run("full", full_job(source, encoded, rows, limits.max_columns), limits, rows)
        deadline += self._execute([full], limits, deadline)
        _raise_setup_failure([full])
        if full.error is not None:
            raise full.error
        if full.result is None:
            raise CandidateError("the full run returned no result", status="runtime_error")
        planned = cut_points(full.result.signals, full.features_s) if callable(cut_points) else cut_points
        cuts = sorted({int(c) for c in planned if 0 < int(c) < rows})
        # Interleaved shares of the cuts, one gate child each (limits.workers at once): each still ascends.
        gates = []
        for share in (cuts[i :: max(1, limits.workers)] for i in range(min(len(cuts), max(1, limits.workers)))):
            job, chunks = gate_job(source, encoded, share, tail_rows, set(whole), limits.max_columns)
            gates.append(
                _Run("gate", job, limits, rows, chunks=chunks, cuts=share, tail_rows=tail_rows, whole=set(whole))
            )
        if gates:
            self._execute(gates, limits, deadline)
            _raise_setup_failure(gates)
        failed = [gate for gate in gates if gate.error is not None and not gate.cancelled]
        if failed:
            first = min(failed, key=lambda gate: gate.failed_cut)
            raise _prefix_failure(first.error, first.failed_cut, frame.index)  # type: ignore[arg-type]
        for gate in gates:
            if len(gate.steps) != len(gate.cuts):
                raise _prefix_failure(
                    CandidateError("the look-ahead run returned no result for some prefixes", status="runtime_error"),
                    gate.cuts[len(gate.steps)],
                    frame.index,
                )
        return CandidateOutput(
            rows=rows,
            columns=full.result.columns,
            features=full.result.features,
            signals=full.result.signals,
            steps=tuple(sorted((step for gate in gates for step in gate.steps), key=lambda step: step.cut)),
            output=full.output_text(),
            warnings=tuple(full.warnings),
            timings={
                "run_s": full.wall_s,
                "gate_s": max((gate.wall_s for gate in gates), default=0.0),
                "total_s": time.perf_counter() - started,
            },
        )

    def probe_layers(self) -> dict[str, bool | str]:
        """Which isolation layers hold on this machine, measured from inside a real worker child.

        Keys: worker_process, network_namespace, filesystem_view, unprivileged_user, seccomp,
        rlimits, scrubbed_env, audit_hook. Values: True, or a string saying why not (for `autotrade
        doctor` and each run's config). Starts the server if needed, then runs a probe child (a few ms).
        """
        empty = encode_frame(pd.DataFrame(index=pd.DatetimeIndex([], name="Date")))
        run = _Run("probe", pack(*job_header("probe", "", empty, 0, Limits().max_columns)), Limits(), 0)
        self._execute([run], Limits())
        _raise_setup_failure([run])
        report: dict[str, bool | str] = {"worker_process": True}
        report.update(self.setup_report)
        if run.probe is None:
            reason = str(run.error) if run.error else "no report"
            report.update({k: f"unknown (probe failed: {reason})" for k in ("seccomp", "audit_hook", "rlimits")})
        else:  # what the child measured, except where set-up already said why a layer is missing
            report.update({k: v for k, v in run.probe.items() if report.get(k, True) is True})
        return report

    # -- the server and its channels ---------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._closed:
            raise SandboxError("this sandbox pool is closed: make a new SandboxPool for further runs")
        if self._server is not None and self._server.owner != os.getpid():
            self._server, self._ready, self._idle = None, False, []  # a forked harness: the parent's server
        if self._server is not None and self._server.process.poll() is None:
            return
        self._stop()
        self._server = launch.start_fresh(self.faults)

    def _wait_ready(self) -> None:
        """Wait (holding the lock: every other evaluation needs the server too) up to 120 s for the server's
        ready message; a close() from another thread ends the wait within a tick."""
        assert self._server is not None
        ours = self._server.sock
        message = b""
        give_up = time.monotonic() + 120
        try:
            while not self._closed and time.monotonic() < give_up:
                if select.select([ours], [], [], 0.05)[0]:
                    message = ours.recv(65536)
                    break
        except OSError:
            message = b""
        if self._closed:
            self._stop()
            raise SandboxError("this sandbox pool was closed while its server started")
        if not message:
            log = self._server_log()
            self._stop()
            raise SandboxError(f"the sandbox worker failed to start: {log}")
        self.setup_report = json.loads(message)["layers"]
        self._ready = True

    def _server_log(self) -> str:
        if self._server is None:
            return "(no log)"
        self._server.log.seek(0)
        lines = self._server.log.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "(no log)"

    def _stop(self) -> None:
        for channel in self._idle:
            channel.close()
        self._idle = []
        if self._server is not None:
            self._server.stop()  # the server and any child still running
        self._server, self._ready = None, False

    @contextlib.contextmanager
    def _channel(self) -> Iterator[socket.socket]:
        """A channel to a ready server for one evaluation's runs: an idle one, or a new one passed to the server.

        An evaluation that fails closes only its own channel, and the server then kills only that channel's
        children: the server and the other evaluations' runs go on. The server is stopped (a fresh one next
        time) only once it has exited. An OSError on the channel is the harness's fault, never the candidate's,
        and leaves as a SandboxError.
        """
        failure: OSError | None = None
        with self._lock:
            self._ensure_started()
            if not self._ready:
                self._wait_ready()
            server = self._server
            assert server is not None
            if self._idle:
                channel = self._idle.pop()
            else:
                channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                try:
                    socket.send_fds(server.sock, [json.dumps({"op": "channel"}).encode()], [theirs.fileno()])
                except OSError as exc:
                    channel.close()
                    failure = exc
                finally:
                    theirs.close()
        if failure is not None:
            raise self._lost(server, failure) from failure
        try:
            yield channel
        except OSError as exc:
            channel.close()
            raise self._lost(server, exc) from exc
        except BaseException:
            channel.close()  # interrupted: the server kills whatever this channel still runs
            raise
        with self._lock:
            if self._server is server:
                self._idle.append(channel)
            else:
                channel.close()

    def _lost(self, server: launch.Server, exc: OSError) -> SandboxError:
        """Why an evaluation lost its channel to `server`, as the SandboxError it ends with.

        A server that has exited is stopped, so the next run starts a fresh one; one still running keeps
        serving the pool's other evaluations.
        """
        exited = _exit_status(server.process)
        log = ""
        with self._lock:
            if exited is not None and self._server is server:
                log = self._server_log()
                self._stop()
        if self._closed:
            return SandboxError("the sandbox pool was closed while this evaluation ran")
        if exited is not None:
            return SandboxError(f"the sandbox server stopped during this evaluation (exit status {exited}): {log}")
        return SandboxError(f"this evaluation lost its channel to the sandbox server ({type(exc).__name__}: {exc})")

    def _execute(self, runs: list[_Run], limits: Limits, deadline: float | None = None) -> float:
        """Run every job, at most `limits.workers` at once, all by `deadline` (monotonic; default: the
        timeout from now); the first failure cancels the others. Returns the seconds spent waiting for
        a slot while none of them ran (the caller's deadline moves by as much). Raises SandboxError when
        the channel to the server fails (the pool closed, the server died): no verdict on the candidate."""
        deadline = deadline if deadline is not None else time.monotonic() + limits.timeout_s
        with self._channel() as channel:
            return self._run_all(channel, runs, limits, deadline)

    def _run_all(self, channel: socket.socket, runs: list[_Run], limits: Limits, deadline: float) -> float:
        workers = max(1, limits.workers)
        queue = deque(runs)
        active: dict[int, _Run] = {}
        waited = 0.0  # while none of these runs ran for want of a slot
        backstop = deadline + 30
        # Since when the queue's next run could have started had the pool had a free slot: the time from then to
        # its start is the pool's, not the candidate's, whether or not another run of the batch ran meanwhile.
        eligible = time.monotonic()
        with selectors.DefaultSelector() as selector:
            selector.register(channel, selectors.EVENT_READ, None)
            try:
                while queue or active:
                    while queue and len(active) < workers:
                        if queue[0].cancelled:
                            queue.popleft()
                            continue
                        if active:  # never wait for a slot while holding one: others may wait for ours
                            if not self._slots.acquire(blocking=False):
                                break
                        else:
                            mark = time.monotonic()
                            self._slots.acquire()
                            waited += time.monotonic() - mark
                        run = queue.popleft()
                        now = time.monotonic()
                        run_deadline = deadline + (now - eligible)
                        backstop = max(backstop, run_deadline + 30)
                        try:
                            self._spawn(channel, run, limits, max(0.0, run_deadline - now), selector)
                        except BaseException:
                            self._slots.release()
                            raise
                        active[run.job_id] = run
                        if len(active) == workers:
                            eligible = math.inf  # the next run waits for one of these, on the candidate's time
                    if not active:
                        break
                    timeout = max(0.0, backstop - time.monotonic())
                    if queue and len(active) < workers:
                        timeout = min(timeout, 0.02)  # a slot may free up in another evaluation
                    events = selector.select(timeout=timeout)
                    if not events and time.monotonic() >= backstop:
                        raise BrokenPipeError("sandbox server did not answer")
                    for key, _ in events:
                        if key.data is None:
                            self._server_message(channel, active)
                        else:
                            self._pump(*key.data, selector)
                    for number in [n for n, r in active.items() if r.done()]:
                        run = active.pop(number)
                        self._slots.release()
                        eligible = min(eligible, time.monotonic())
                        if "job" in run.fds:  # nothing more to send to a child that has ended
                            if run.fds["job"] in selector.get_map():
                                selector.unregister(run.fds["job"])
                            os.close(run.fds.pop("job"))
                        run.conclude()
                        if run.error is not None and not run.cancelled:
                            self._cancel_after(channel, run, runs, active)
            finally:
                for run in active.values():  # interrupted (Ctrl-C, server gone): stop what still runs
                    self._slots.release()
                    if run.exit is None:
                        with contextlib.suppress(OSError):
                            channel.send(json.dumps({"op": "kill", "job": run.job_id}).encode())
                for run in runs:
                    run.close_pipes()
        return waited

    @staticmethod
    def _cancel_after(channel: socket.socket, failed: _Run, runs: list[_Run], active: dict[int, _Run]) -> None:
        """A failed run ends the others of its batch (a candidate's gate children): its verdict is the candidate's."""
        for run in runs:
            if run is failed or run.cancelled or run.done():
                continue
            run.cancelled = True
            if run.job_id in active:
                # A channel already gone takes its children with it; the failed run's verdict stands either way.
                with contextlib.suppress(OSError):
                    channel.send(json.dumps({"op": "kill", "job": run.job_id}).encode())

    def _spawn(
        self, channel: socket.socket, run: _Run, limits: Limits, timeout_s: float, selector: selectors.BaseSelector
    ) -> None:
        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        output_read, output_write = os.pipe()
        run.job_id = next(self._job_ids)
        request = {
            "op": "spawn",
            "job": run.job_id,
            "timeout_s": timeout_s,
            "memory_mb": limits.memory_mb,
            "cpu_s": limits.cpu_s,
            "disabled": sorted(limits.disabled_layers),
        }
        try:
            socket.send_fds(channel, [json.dumps(request).encode()], [job_read, result_write, output_write])
        except OSError:
            for fd in (job_write, result_read, output_read):
                os.close(fd)
            raise
        finally:
            for fd in (job_read, result_write, output_write):
                os.close(fd)
        run.started = time.perf_counter()
        for role, fd in (("job", job_write), ("result", result_read), ("output", output_read)):
            os.set_blocking(fd, False)
            run.fds[role] = fd
            selector.register(fd, selectors.EVENT_WRITE if role == "job" else selectors.EVENT_READ, (run, role))

    @staticmethod
    def _server_message(channel: socket.socket, active: dict[int, _Run]) -> None:
        message = channel.recv(65536)
        if not message:
            raise BrokenPipeError("sandbox server closed its socket")
        event = json.loads(message)
        run = active.get(event.get("job"))
        if run is not None and event.get("op") == "exited":
            run.exit = event
        elif run is not None and event.get("op") == "refused":  # no child: its pipes' far ends are closed already
            run.exit = {"refused": _text(event.get("reason"), 300)}

    @staticmethod
    def _pump(run: _Run, role: str, selector: selectors.BaseSelector) -> None:
        fd = run.fds[role]
        try:
            if role == "job":
                run.sent += os.write(fd, memoryview(run.job)[run.sent : run.sent + (1 << 20)])
                if run.sent < len(run.job):
                    return
                del run.job[: run.sent]
                run.sent = 0
                selector.unregister(fd)
                if not run.chunks:  # a gate keeps its job pipe open until its last prefix is released
                    os.close(fd)
                    del run.fds[role]
                return
            chunk = os.read(fd, 1 << 16)
            finished = not chunk
            if role == "result":
                if run.received(chunk) and "job" in run.fds and run.fds["job"] not in selector.get_map():
                    selector.register(run.fds["job"], selectors.EVENT_WRITE, (run, "job"))
                finished = finished or run.overflow
            else:
                room = max(0, run.limits.output_bytes - len(run.output))
                run.output += chunk[:room]
                run.dropped += max(0, len(chunk) - room)
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            finished = True  # the child is gone before reading its job; the server's exit report says why
            if role == "job":
                selector.unregister(fd)
                os.close(fd)
                del run.fds[role]
                return
        if finished:
            selector.unregister(fd)
            os.close(fd)
            del run.fds[role]


def run_candidate(
    source: str,
    frame: pd.DataFrame,
    cut_points: CutPlan = (),
    limits: Limits = Limits(),
    tail_rows: int = TAIL_ROWS,
    whole: Sequence[int] = (),
    pool: SandboxPool | None = None,
) -> CandidateOutput:
    """SandboxPool.run_candidate on `pool`, or on a pool of its own for this one call (a server started and stopped)."""
    if pool is not None:
        return pool.run_candidate(source, frame, cut_points, limits, tail_rows, whole)
    with SandboxPool() as own:
        return own.run_candidate(source, frame, cut_points, limits, tail_rows, whole)


def _raise_setup_failure(runs: Sequence[_Run]) -> None:
    """SandboxError when a child failed before any candidate code ran: the machine's problem, not the block's."""
    failed = next((run for run in runs if run.setup_failure is not None), None)
    if failed is not None:
        raise SandboxError(
            f"the sandbox could not set up a worker process: {failed.setup_failure} "
            "(`autotrade doctor` shows which isolation layers this machine allows)"
        )


def _prefix_failure(error: CandidateError, cut: int, index: pd.DatetimeIndex) -> CandidateError:
    """A gate failure where the full run succeeded: look-ahead, unless the gate ran out of time or memory."""
    if error.status in ("timeout", "memory"):
        return error
    return CandidateError(
        f"look-ahead check: the block fails when bars after {bar_label(index[cut - 1])} are "
        f"removed (first {cut} bars): {error}",
        status="lookahead",
        error_type=error.error_type,
        traceback=error.traceback,
    )


class _Run:
    """One child: its job bytes going in, its result and output coming back, how it ended.

    kind "full" and "probe" send one reply; "gate" sends one step frame per cut, each answered by
    the next prefix's bars (`chunks`, released one at a time), then a final frame.
    """

    def __init__(
        self,
        kind: str,
        job: bytes,
        limits: Limits,
        rows: int,
        chunks: deque[bytes] | None = None,
        cuts: Sequence[int] = (),
        tail_rows: int = 0,
        whole: set[int] | None = None,
    ) -> None:
        self.kind, self.rows, self.limits = kind, rows, limits
        self.job = bytearray(job)
        self.chunks = chunks or deque()
        self.cuts, self.tail_rows, self.whole = list(cuts), tail_rows, whole or set()
        self.job_id = -1  # unique per server connection, given at spawn
        self.sent = 0
        self.result_bytes = bytearray()
        width = 8 * (1 + limits.max_columns)
        self.result_cap = PREFIX.size + HEADER_CAP + width * rows  # one reply, or one gate frame
        self.overflow = False
        self.output = bytearray()
        self.dropped = 0
        self.exit: dict[str, Any] | None = None
        self.cancelled = False  # killed or never started because another run failed
        self.expects_probe = kind == "probe"  # the one reply kind this run may send
        self.setup_failure: str | None = None  # why the sandbox could not set the child up (no candidate code ran)
        self.set_up = False  # the child's SET_UP byte arrived
        self.fds: dict[str, int] = {}
        self.started = self.finished = 0.0
        self.result: RunResult | None = None
        self.steps: list[GateStep] = []
        self.final: tuple[Any, bytes] | None = None  # a gate's last frame
        self.failed_cut = cuts[0] if cuts else rows
        self.malformed: str | None = None
        self.error: CandidateError | None = None
        self.probe: dict[str, bool | str] | None = None
        self.warnings: list[str] = []
        self.features_s = 0.0  # generate_features' time on the full frame, as the child measured it

    @property
    def wall_s(self) -> float:
        return self.finished - self.started

    def output_text(self) -> str:
        text = clean_text(self.output.decode("utf-8", errors="replace"))
        if self.dropped:
            text += f"\n[... {self.dropped} more bytes of output dropped]"
        return text

    def done(self) -> bool:
        """The child has ended and its result and output pipes are drained (a gate's job pipe may still be open)."""
        return self.exit is not None and not (self.fds.keys() - {"job"})

    def close_pipes(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def conclude(self) -> None:
        """Turn what came back into a result, a CandidateError, or a set-up failure of the sandbox itself."""
        self.finished = time.perf_counter()
        exit_info = self.exit or {}
        limits = self.limits
        if self.cancelled:
            self.error = CandidateError("cancelled after another run failed", status="runtime_error")
            return
        if exit_info.get("refused"):
            self.setup_failure = f"the server could not start it ({exit_info['refused']})"
            self.error = CandidateError(
                f"the sandbox could not set up a worker: {self.setup_failure}", status="runtime_error"
            )
            return
        if exit_info.get("timed_out"):
            self.error = CandidateError(
                f"timed out: the candidate's runs (the full run and every look-ahead run) "
                f"may take {limits.timeout_s:g} s of wall clock in total; the worker was killed",
                status="timeout",
                error_type="TimeoutError",
            )
            return
        if self.overflow:
            self.error = CandidateError(
                f"the worker sent back more than {self.result_cap} bytes (limit: {limits.max_columns} feature columns)",
                status="runtime_error",
            )
            return
        if not self.set_up:
            last = self.output_text().strip().splitlines()[-1:] or [_ending(exit_info)]
            self.setup_failure = last[0]
            self.error = CandidateError(f"the sandbox could not set up a worker: {last[0]}", status="runtime_error")
            return
        if self.malformed is not None:
            self.error = CandidateError(
                f"the worker returned malformed output ({self.malformed})", status="runtime_error"
            )
            return
        if self.kind == "gate" and self.final is not None:
            self._parse_final(*self.final)
            return
        if self.kind != "gate" and self.result_bytes:
            self._parse()
            return
        killed_by = exit_info.get("signal")
        if killed_by in (signal.SIGXCPU, signal.SIGKILL) and exit_info.get("cpu_s", 0.0) >= limits.cpu_s - 0.5:
            self.error = CandidateError(
                f"CPU time limit of {limits.cpu_s} s exceeded; the worker was killed",
                status="timeout",
                error_type="TimeoutError",
            )
        elif killed_by == signal.SIGKILL:
            self.error = CandidateError(
                f"the worker was killed, most likely out of memory (limit {limits.memory_mb} MB)",
                status="memory",
                error_type="MemoryError",
            )
        elif killed_by:
            self.error = CandidateError(
                f"the worker crashed ({signal.Signals(killed_by).name})",
                status="runtime_error",
                error_type=signal.Signals(killed_by).name,
            )
        else:
            self.error = CandidateError(
                f"the worker ended (exit code {exit_info.get('code')}) without a result; "
                "the block must not exit, fork or close its output",
                status="runtime_error",
            )

    def received(self, chunk: bytes) -> bool:
        """Take bytes from the result pipe; True when a gate step released the next prefix's bars."""
        self.result_bytes += chunk
        if not self.set_up and self.result_bytes:
            if not self.result_bytes.startswith(SET_UP):
                self.malformed = "no set-up mark"
                return False
            self.set_up = True
            del self.result_bytes[: len(SET_UP)]
        if len(self.result_bytes) > self.result_cap:
            self.overflow = True
        if self.kind != "gate" or self.malformed or self.overflow:
            return False
        released = False
        while self.final is None and len(self.result_bytes) >= PREFIX.size:
            header_length, payload_length = PREFIX.unpack_from(self.result_bytes)
            end = PREFIX.size + header_length + payload_length
            if len(self.result_bytes) < end:
                break
            try:
                header, payload = unpack(bytes(self.result_bytes[:end]), HEADER_CAP)
                del self.result_bytes[:end]
                if not (isinstance(header, dict) and header.get("status") == "step"):
                    self.final = (header, payload)
                    break
                self._accept_step(header, payload)
            except (ValueError, TypeError, KeyError) as exc:
                self.malformed = str(exc)
                break
            if self.chunks:
                self.job += self.chunks.popleft()
                released = True
        return released

    def _accept_step(self, header: dict[str, Any], payload: bytes) -> None:
        """One gate step: the cut it must be, the rows it must cover, the columns and values it may hold."""
        at = len(self.steps)
        if at >= len(self.cuts) or header.get("cut") != self.cuts[at]:
            raise ValueError("a gate step for a cut that was not asked for")
        cut = self.cuts[at]
        start = 0 if cut in self.whole else max(0, cut - self.tail_rows)
        if header.get("start") != start:
            raise ValueError("a gate step for other rows than asked for")
        signal_start = self.cuts[at - 1] if at else 0
        if header.get("signal_start") != signal_start:
            raise ValueError("a gate step with signals for other bars than asked for")
        columns = _checked_columns(header.get("columns"), self.limits.max_columns)
        width, added = cut - start, cut - signal_start
        if len(payload) != 8 * (width * len(columns) + added):
            raise ValueError(f"a gate step of {len(payload)} bytes for {width} rows and {len(columns)} columns")
        values = np.frombuffer(payload, dtype="<f8", count=width * len(columns)).reshape(len(columns), width)
        signals = np.frombuffer(payload, dtype="<f8", offset=8 * width * len(columns)).copy()
        if not np.isin(signals, tuple(SIGNALS)).all():
            raise ValueError("signals outside {-1, 0, 1}")
        self.steps.append(
            GateStep(
                cut, start, tuple(columns), {c: values[i].copy() for i, c in enumerate(columns)}, signal_start, signals
            )
        )
        self.failed_cut = self.cuts[min(at + 1, len(self.cuts) - 1)]

    def _parse_final(self, header: Any, payload: bytes) -> None:
        """A gate's last frame: done after every step, or the error of the prefix it failed on."""
        if not isinstance(header, dict) or payload:
            self.error = CandidateError("the worker returned malformed output (gate end)", status="runtime_error")
        elif header.get("status") == "done" and len(self.steps) == len(self.cuts):
            return
        elif header.get("status") in STATUSES - {"ok"}:
            self.error = _reported_error(header, self.limits)
        else:
            self.error = CandidateError("the worker returned malformed output (gate end)", status="runtime_error")

    def _parse(self) -> None:
        try:
            header, payload = unpack(bytes(self.result_bytes), HEADER_CAP)
            self._accept(header, payload)
        except (ValueError, TypeError, KeyError) as exc:
            self.error = CandidateError(f"the worker returned malformed output ({exc})", status="runtime_error")

    def _accept(self, header: Any, payload: bytes) -> None:
        """Validate a child's result header and payload; nothing in them is trusted."""
        if not isinstance(header, dict):
            raise TypeError("header is not an object")
        status = header.get("status")
        if self.expects_probe:
            if status != "probe" or not isinstance(header.get("layers"), dict):
                raise ValueError("a probe run must send a probe report")
            self.probe = {str(k)[:40]: (v if v is True else str(v)[:200]) for k, v in header["layers"].items()}
            return
        if status not in STATUSES:
            raise ValueError(f"unknown status {str(status)[:40]!r}")
        if status != "ok":
            self.error = _reported_error(header, self.limits)
            return
        columns = _checked_columns(header.get("columns"), self.limits.max_columns)
        rows = self.rows
        if len(payload) != 8 * rows * (1 + len(columns)):
            raise ValueError(f"payload of {len(payload)} bytes for {rows} rows and {len(columns)} columns")
        values = (
            np.frombuffer(payload, dtype="<f8").reshape(1 + len(columns), rows)
            if rows
            else np.zeros((1 + len(columns), 0))
        )
        signals = values[0].copy()
        if not np.isin(signals, tuple(SIGNALS)).all():
            raise ValueError("signals outside {-1, 0, 1}")
        features = {c: values[i + 1].copy() for i, c in enumerate(columns)}
        self.result = RunResult(rows=rows, columns=tuple(columns), features=features, signals=signals)
        warnings = header.get("warnings")
        if isinstance(warnings, list):
            self.warnings = [_text(w, 300) for w in warnings[:10]]
        timings = header.get("timings")
        features_s = timings.get("features_s") if isinstance(timings, dict) else None
        if isinstance(features_s, (int, float)) and math.isfinite(features_s) and features_s >= 0:
            self.features_s = float(features_s)  # the child's word: only sizes the gate, never judges it


def _checked_columns(columns: Any, max_columns: int) -> list[str]:
    """A child's column list: unique printable strings, at most `max_columns`; ValueError otherwise."""
    if (
        not isinstance(columns, list)
        or len(columns) > max_columns
        or not all(isinstance(c, str) and len(c) <= 200 and first_unsafe(c) is None for c in columns)
        or len(set(columns)) != len(columns)
    ):
        raise ValueError("bad column list")
    return columns


def _reported_error(header: dict[str, Any], limits: Limits) -> CandidateError:
    """The CandidateError a child reported for the block (its strings capped and cleaned)."""
    status = header["status"]
    error_type = header.get("error_type")
    message = _text(header.get("message"), 4000)
    if status == "memory":
        message += f" (limit {limits.memory_mb} MB)"
    return CandidateError(
        message,
        status=status,
        error_type=_text(error_type, 100) if error_type is not None else None,
        traceback=_text(header.get("traceback"), 10_000),
    )


def _exit_status(process: launch.Process, grace_s: float = 1.0) -> int | None:
    """The server's exit status, or None while it runs. A dying server closes its sockets a moment before it can
    be reaped, so a channel that just broke waits up to `grace_s` for the exit it may mean."""
    end = time.monotonic() + grace_s
    while (status := process.poll()) is None and time.monotonic() < end:
        time.sleep(0.01)
    return status


def _ending(exit_info: Mapping[str, Any]) -> str:
    """How a child ended, when it said nothing itself."""
    if exit_info.get("signal"):
        return f"the worker was killed by {signal.Signals(exit_info['signal']).name} during set-up"
    return f"the worker exited with code {exit_info.get('code')} during set-up"


def _text(value: Any, cap: int) -> str:
    """A string a child sent, capped and with no terminal control sequences; anything else is empty."""
    text = clean_text(value) if isinstance(value, str) else ""
    return text if len(text) <= cap else text[:cap] + "..."


__all__ = ["CandidateOutput", "CutPlan", "GateStep", "Limits", "RunResult", "STATUSES", "SandboxPool", "run_candidate"]
