"""Run a candidate in isolated worker processes and bring back plain data: features and signals.

Processes:
- harness (trusted): `run_candidate` sends each worker child its slice of the frame and the
  code over a pipe, reads back a length-prefixed JSON header plus raw float64 bytes
  (nothing is unpickled), validates lengths and values, and computes everything else itself.
- fork server: a fresh `python -I` (scrubbed environment, none of the harness's memory, so
  no API key and no test rows to find) that imports pandas once, enters a network namespace
  and a read-only library-only filesystem view, then forks one child per run. It never sees
  candidate data: the harness passes each child's pipes to it (SCM_RIGHTS) and writes the
  data straight into the child, so a prefix run cannot find the full frame anywhere in memory.
  It enforces the wall-clock limit with SIGKILL and reports how each child ended.
  One-shot commands (`autotrade backtest`, `python trade.py`) fork it from the harness instead
  (`fork_server`, before any data or secret is loaded): no second pandas import (~0.3 s), and
  the server overwrites every inherited copy of the environment before any candidate runs.
  The research loop, whose harness holds the API key, keeps the fresh interpreter.
- worker child: applies rlimits, uid nobody, seccomp and the audit hook (layers.py), runs the
  block (execute.py) on its frame, writes the result and exits with os._exit (no atexit hooks).

Each run (the full frame and every look-ahead prefix) is its own fresh child: no state survives
between runs. Runs go two at a time by default; the first failure cancels the rest.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import gc
import itertools
import json
import math
import os
import resource
import select
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from autotrade.errors import CandidateError, SandboxError
from autotrade.sandbox import launch, layers
from autotrade.sandbox.execute import (
    bar_label,
    candidate_error,
    compile_block,
    compute_features,
    compute_features_and_signals,
    exec_block,
    signals_of_rows,
    state_free_signals,
)
from autotrade.status import Status
from autotrade.untrusted import clean_text, first_unsafe

_PREFIX = struct.Struct("<IQ")  # header length, payload length
SET_UP = b"S"  # a child's first byte on its result pipe: its layers are in place, candidate code may run next
_INTERNAL_ERROR = 70  # exit code of a child whose set-up failed (EX_SOFTWARE)
_HEADER_CAP = 1 << 20  # bytes of JSON header a child may send back
_FRAME_DTYPES = ("float64", "int64", "bool")  # sent as is; anything else is sent as float64
_STATUSES = frozenset(status.value for status in Status if status.from_worker)


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

    @property
    def added_columns(self) -> tuple[str, ...]:
        """Columns generate_features added to the input frame."""
        return tuple(c for c in self.columns if c not in _INPUT_COLUMNS)


_INPUT_COLUMNS = frozenset({"Open", "High", "Low", "Close", "Adj Close", "Volume"})
CutPlan = Sequence[int] | Callable[[np.ndarray, float], Sequence[int]]  # (signals, generate_features' seconds)


def run_candidate(
    source: str,
    frame: pd.DataFrame,
    cut_points: CutPlan = (),
    limits: Limits = Limits(),
    tail_rows: int = 32,
    whole: Sequence[int] = (),
) -> CandidateOutput:
    """Run the block on `frame` in one sandboxed child, then on each prefix `frame.iloc[:cut]` in another.

    `cut_points` is a list of prefix lengths, or a function of the full run's signals and of its
    generate_features time giving one (lookahead.cut_plan). The gate child runs the prefixes in ascending order and receives each
    prefix's new bars only after it has answered for the previous one, so it never holds a later
    bar; it returns the features of the last `tail_rows` rows of each prefix (all rows at the
    cuts in `whole`). One wall-clock budget, limits.timeout_s, covers both children.

    Raises CandidateError with status syntax_error, runtime_error, memory, timeout, bad_signal or
    lookahead (module state carried into signals) for the full run; a prefix run that fails where
    the full run did not is status lookahead. The comparison itself is lookahead.check_lookahead.
    """
    started = time.perf_counter()
    deadline = time.monotonic() + limits.timeout_s
    rows = len(frame)
    encoded = _encode_frame(frame)
    full = _Run("full", _full_job(source, encoded, rows, limits), limits, rows)
    _SERVER.execute([full], limits, deadline)
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
        job, chunks = _gate_job(source, encoded, share, tail_rows, set(whole), limits)
        gates.append(_Run("gate", job, limits, rows, chunks=chunks, cuts=share, tail_rows=tail_rows, whole=set(whole)))
    if gates:
        _SERVER.execute(gates, limits, deadline)
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


def probe_layers() -> dict[str, bool | str]:
    """Measure the isolation layers from inside a real worker child (for `autotrade doctor`)."""
    empty = _encode_frame(pd.DataFrame(index=pd.DatetimeIndex([], name="Date")))
    header, payload = _job_header("probe", "", empty, 0, Limits())
    run = _Run("probe", _pack(header, payload), Limits(), 0)
    _SERVER.execute([run], Limits())
    _raise_setup_failure([run])
    report: dict[str, bool | str] = {"worker_process": True}
    report.update(_SERVER.setup_report)
    if run.probe is None:
        reason = str(run.error) if run.error else "no report"
        report.update({k: f"unknown (probe failed: {reason})" for k in ("seccomp", "audit_hook", "rlimits")})
    else:  # what the child measured, except where set-up already said why a layer is missing
        report.update({k: v for k, v in run.probe.items() if report.get(k, True) is True})
    return report


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


# ----------------------------------------------------------------------------------------------
# Harness side: one fork server per harness process, shared by all evaluations.


def _encode_frame(frame: pd.DataFrame) -> dict[str, Any]:
    """Column arrays and index as plain numpy (sent to children as raw bytes, never pickled)."""
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise TypeError("the frame must have a DatetimeIndex")
    columns, arrays = [], []
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.name not in _FRAME_DTYPES:
            values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        columns.append(str(name))
        arrays.append(np.ascontiguousarray(values))
    stamps = frame.index.tz_localize(None) if frame.index.tz is not None else frame.index
    unit = np.datetime_data(stamps.dtype)[0]
    return {
        "columns": columns,
        "arrays": arrays,
        "index": np.ascontiguousarray(stamps.asi8),
        "unit": unit,
        "index_name": frame.index.name,
    }


def _job_header(
    kind: str, source: str, encoded: dict[str, Any], rows: int, limits: Limits
) -> tuple[dict[str, Any], bytes]:
    """The header every job starts with, and the bytes of the first `rows` bars (index, then each column)."""
    header = {
        "kind": kind,
        "source": source,
        "rows": rows,
        "columns": encoded["columns"],
        "dtypes": [a.dtype.name for a in encoded["arrays"]],
        "unit": encoded["unit"],
        "index_name": encoded["index_name"],
        "max_columns": limits.max_columns,
    }
    return header, _rows_bytes(encoded, 0, rows)


def _rows_bytes(encoded: dict[str, Any], start: int, stop: int) -> bytes:
    return b"".join([encoded["index"][start:stop].tobytes()] + [a[start:stop].tobytes() for a in encoded["arrays"]])


def _full_job(source: str, encoded: dict[str, Any], rows: int, limits: Limits) -> bytes:
    header, payload = _job_header("full", source, encoded, rows, limits)
    return _pack(header, payload)


def _gate_job(
    source: str, encoded: dict[str, Any], cuts: list[int], tail_rows: int, whole: set[int], limits: Limits
) -> tuple[bytes, deque[bytes]]:
    """The gate's first message (header and the bars of the first prefix) and each later prefix's new bars."""
    header, payload = _job_header("gate", source, encoded, cuts[0], limits)
    header.update(cuts=cuts, tail_rows=tail_rows, whole=sorted(whole))
    chunks = deque(_rows_bytes(encoded, a, b) for a, b in zip(cuts[:-1], cuts[1:]))
    return _pack(header, payload), chunks


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
        self.result_cap = _PREFIX.size + _HEADER_CAP + width * rows  # one reply, or one gate frame
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
        while self.final is None and len(self.result_bytes) >= _PREFIX.size:
            header_length, payload_length = _PREFIX.unpack_from(self.result_bytes)
            end = _PREFIX.size + header_length + payload_length
            if len(self.result_bytes) < end:
                break
            try:
                header, payload = _unpack(bytes(self.result_bytes[:end]), _HEADER_CAP)
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
        if not np.isin(signals, (-1.0, 0.0, 1.0)).all():
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
        elif header.get("status") in _STATUSES - {"ok"}:
            self.error = _reported_error(header, self.limits)
        else:
            self.error = CandidateError("the worker returned malformed output (gate end)", status="runtime_error")

    def _parse(self) -> None:
        try:
            header, payload = _unpack(bytes(self.result_bytes), _HEADER_CAP)
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
        if status not in _STATUSES:
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
        if not np.isin(signals, (-1.0, 0.0, 1.0)).all():
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


def _ending(exit_info: Mapping[str, Any]) -> str:
    """How a child ended, when it said nothing itself."""
    if exit_info.get("signal"):
        return f"the worker was killed by {signal.Signals(exit_info['signal']).name} during set-up"
    return f"the worker exited with code {exit_info.get('code')} during set-up"


def _text(value: Any, cap: int) -> str:
    """A string a child sent, capped and with no terminal control sequences; anything else is empty."""
    text = clean_text(value) if isinstance(value, str) else ""
    return text if len(text) <= cap else text[:cap] + "..."


class _ForkServerHandle:
    """The harness's connection to its fork server: started on first use, restarted if it dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job_ids = itertools.count()  # never reused: a late report about an old child matches nothing
        self._server: launch.Server | None = None
        self._ready = False
        self.setup_report: dict[str, bool | str] = {}
        self.faults: frozenset[str] = frozenset()  # facilities the next server refuses (simulate_faults)

    def prestart(self) -> None:
        """Launch the server without waiting for it (it imports pandas while the harness works)."""
        with self._lock:
            self._ensure_started()

    def fork(self) -> None:
        """Replace any server of ours with one forked from this process (see fork_server)."""
        with self._lock:
            self._drop_foreign()
            self._stop()
            self._server = _fork_server_process(self.faults)

    def _ensure_started(self) -> None:
        self._drop_foreign()
        if self._server is not None and self._server.process.poll() is None:
            return
        self._stop()
        self._server = launch.start_fresh(self.faults)

    def _drop_foreign(self) -> None:
        if self._server is not None and self._server.owner != os.getpid():
            self._server, self._ready = None, False  # forked harness: the server and socket are the parent's

    def _wait_ready(self) -> None:
        assert self._server is not None
        ours = self._server.sock
        ours.settimeout(120)
        try:
            message = ours.recv(65536)
        except OSError:
            message = b""
        ours.settimeout(None)
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
        if self._server is not None:
            self._server.stop()  # the server and any child still running
        self._server, self._ready = None, False

    @property
    def _sock(self) -> socket.socket | None:
        return self._server.sock if self._server is not None else None

    def close(self) -> None:
        """Stop the server (its children die with it)."""
        with self._lock:
            self._drop_foreign()
            self._stop()

    def execute(self, runs: list[_Run], limits: Limits, deadline: float | None = None) -> None:
        """Run every job, at most `limits.workers` at once, all by `deadline` (monotonic; default: the
        timeout from now); the first failure cancels the others."""
        with self._lock:
            self._ensure_started()
            if not self._ready:
                self._wait_ready()
            try:
                self._execute(runs, limits, deadline if deadline is not None else time.monotonic() + limits.timeout_s)
            except OSError:  # the server died or stopped answering: start a fresh one next time
                self._stop()
                for run in runs:
                    if run.result is None and run.error is None and run.probe is None:
                        run.error = CandidateError("the sandbox worker stopped unexpectedly", status="runtime_error")

    def _execute(self, runs: list[_Run], limits: Limits, deadline: float) -> None:
        assert self._sock is not None
        sock = self._sock
        queue = deque(runs)
        active: dict[int, _Run] = {}
        backstop = deadline + 30
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ, None)
            try:
                while queue or active:
                    while queue and len(active) < max(1, limits.workers):
                        run = queue.popleft()
                        if run.cancelled:
                            continue
                        self._spawn(run, limits, max(0.0, deadline - time.monotonic()), selector)
                        active[run.job_id] = run
                    if not active:
                        break
                    events = selector.select(timeout=max(0.0, backstop - time.monotonic()))
                    if not events and time.monotonic() >= backstop:
                        raise BrokenPipeError("sandbox server did not answer")
                    for key, _ in events:
                        if key.data is None:
                            self._server_message(sock, active)
                        else:
                            self._pump(*key.data, selector)
                    for number in [n for n, r in active.items() if r.done()]:
                        run = active.pop(number)
                        if "job" in run.fds:  # nothing more to send to a child that has ended
                            if run.fds["job"] in selector.get_map():
                                selector.unregister(run.fds["job"])
                            os.close(run.fds.pop("job"))
                        run.conclude()
                        if run.error is not None and not run.cancelled:
                            self._cancel_after(run, runs, active)
            finally:
                for run in active.values():  # interrupted (Ctrl-C, server gone): stop what still runs
                    if run.exit is None:
                        with contextlib.suppress(OSError):
                            sock.send(json.dumps({"op": "kill", "job": run.job_id}).encode())
                for run in runs:
                    run.close_pipes()

    def _cancel_after(self, failed: _Run, runs: list[_Run], active: dict[int, _Run]) -> None:
        """A failed run ends the others of its batch (a candidate's gate children): its verdict is the candidate's."""
        assert self._sock is not None
        for run in runs:
            if run is failed or run.cancelled or run.done():
                continue
            run.cancelled = True
            if run.job_id in active:
                self._sock.send(json.dumps({"op": "kill", "job": run.job_id}).encode())

    def _spawn(self, run: _Run, limits: Limits, timeout_s: float, selector: selectors.BaseSelector) -> None:
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
            socket.send_fds(self._sock, [json.dumps(request).encode()], [job_read, result_write, output_write])
        finally:
            for fd in (job_read, result_write, output_write):
                os.close(fd)
        run.started = time.perf_counter()
        for role, fd in (("job", job_write), ("result", result_read), ("output", output_read)):
            os.set_blocking(fd, False)
            run.fds[role] = fd
            selector.register(fd, selectors.EVENT_WRITE if role == "job" else selectors.EVENT_READ, (run, role))

    def _server_message(self, sock: socket.socket, active: dict[int, _Run]) -> None:
        message = sock.recv(65536)
        if not message:
            raise BrokenPipeError("sandbox server closed its socket")
        event = json.loads(message)
        run = active.get(event.get("job"))
        if run is not None and event.get("op") == "exited":
            run.exit = event

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


_SERVER = _ForkServerHandle()
atexit.register(_SERVER.close)


def simulate_faults(faults: frozenset[str]) -> frozenset[str]:
    """Make the next sandbox server refuse `faults` (names from layers.FAULTS) as such a machine would; tests only.

    Stops the current server; returns the faults it had, to restore afterwards.
    """
    unknown = set(faults) - set(layers.FAULTS)
    if unknown:
        raise ValueError(f"unknown faults: {', '.join(sorted(unknown))}")
    with _SERVER._lock:
        previous = _SERVER.faults
        _SERVER._drop_foreign()
        _SERVER._stop()
        _SERVER.faults = frozenset(faults)
    return previous


def prestart() -> None:
    """Start the fork server now, in the background (about 0.3 s of pandas import overlaps the caller's work)."""
    _SERVER.prestart()


def fork_server() -> None:
    """Start the fork server as a fork of this process: a one-shot command's fast start (no second pandas import).

    Call it before loading data, .env or any secret, and before starting threads: the server
    inherits this process's memory. It then scrubs what it inherited of the environment
    (layers.scrub_inherited_environment) before any candidate runs. Falls back to a fresh
    interpreter when this process's BLAS cannot be held to one thread.
    """
    if threading.active_count() > 1:  # a fork keeps only this thread, and any lock another one held
        _SERVER.prestart()
        return
    try:
        blas = layers.limit_blas_threads()
    except OSError as exc:  # no /proc to look in
        blas = str(exc)
    if blas is not True:
        _SERVER.prestart()
        return
    _SERVER.fork()


class _ForkedProcess:
    """A server started by os.fork(): the little of subprocess.Popen the harness uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status once the server has ended (reaping it), else None."""
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self) -> int:
        """Wait for the server to end and reap it; its exit status."""
        while self.returncode is None:
            self._reap(0)
        return self.returncode

    def _reap(self, options: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:  # reaped elsewhere: it has ended all the same
            self.returncode = -1
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)


def _fork_server_process(faults: frozenset[str]) -> launch.Server:
    """Fork this process into a fork server; returns the harness's side of it (no waiting)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    log = tempfile.TemporaryFile()
    harness = os.getpid()
    sys.stdout.flush()  # nothing the harness buffered may be written twice
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = _INTERNAL_ERROR
        try:
            ours.close()
            _become_server(theirs, log.fileno(), harness, faults)
            code = 0  # the harness has gone
        except BaseException:  # noqa: BLE001 - say why on the log, which the harness reads if we never answer
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)  # never back into the harness's code, its atexit hooks or its buffers
    theirs.close()
    return launch.Server(_ForkedProcess(pid), ours, log, harness)


def _become_server(control: socket.socket, log_fd: int, harness_pid: int, faults: frozenset[str]) -> None:
    """In the forked child: own session, no harness descriptors, environment scrubbed, then serve."""
    os.setsid()  # out of the terminal's process group (Ctrl-C is the harness's), and killpg reaches our children
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log_fd, 2)
    keep = control.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)  # the harness's files, sockets and terminal
    layers.scrub_inherited_environment(launch.SERVER_ENV)
    os.chdir("/")
    serve(keep, harness_pid, warm_up=False, faults=sorted(faults))


def _pack(header: dict[str, Any], payload: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return _PREFIX.pack(len(encoded), len(payload)) + encoded + payload


def _unpack(data: bytes, header_cap: int) -> tuple[Any, bytes]:
    """Split a framed message; raise ValueError unless the lengths add up exactly."""
    if len(data) < _PREFIX.size:
        raise ValueError("short message")
    header_length, payload_length = _PREFIX.unpack_from(data)
    if header_length > header_cap or _PREFIX.size + header_length + payload_length != len(data):
        raise ValueError("lengths do not match")
    try:
        header = json.loads(data[_PREFIX.size : _PREFIX.size + header_length])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError("header is not JSON") from exc
    return header, data[_PREFIX.size + header_length :]


# ----------------------------------------------------------------------------------------------
# Fork server side (a separate, fresh interpreter).

# Runs in the long-running server before any candidate, so that pandas' lazily imported parts
# (formatting, window functions, groupby, resample...) and first-call caches are loaded once for
# every child, while the whole filesystem is still visible (children import from the read-only
# library view just as well, only each on its own).
_WARM_UP = """
def generate_features(df):
    c = df["Close"]
    df["a"] = c.rolling(20).mean() - c.rolling(5, min_periods=1).median() + c.rolling(9).std()
    df["b"] = c.ewm(span=12, adjust=False).mean() - c.ewm(alpha=0.1).std() + c.expanding().max()
    df["c"] = c.pct_change().rolling(10).apply(lambda x: x.sum(), raw=True) + c.diff().clip(-1, 1)
    df["d"] = np.where(c > c.shift(1), 1.0, -1.0) + c.rolling(14).quantile(0.8) + c.rolling(14).rank()
    df["e"] = c.rolling(20).corr(df["Volume"]) + c.rolling(5).min() + c.rolling(5).max() + c.rolling(5).sum()
    df["f"] = pd.qcut(c, 4, labels=False) + pd.cut(c, 3, labels=False) + c.rank(pct=True)
    df["g"] = c.where(c > 0).ffill().bfill().interpolate().fillna(0).cumsum().cummax()
    df["h"] = np.log(c).diff().abs().mask(c < 0, 0) + np.sign(c.diff()) + np.gradient(c.to_numpy())
    df["i"] = df.index.dayofweek + df.index.month + pd.Series(df.index, index=df.index).dt.day
    df["j"] = c.groupby(df.index.year).transform("mean") + c.resample("W").last().reindex(df.index).ffill()
    df["k"] = pd.concat([c, c.shift(1)], axis=1).max(axis=1).astype("float32").astype(float)
    df["m"] = (df[["Open", "Close"]].mean(axis=1) > c).astype(int) + c.isna() + pd.isna(c) + c.notna()
    np.polyfit(np.arange(10.0), c.to_numpy()[:10], 1); np.linalg.lstsq(np.ones((5, 2)), np.ones(5), rcond=None)
    np.percentile(c, 50); c.describe(); c.value_counts(); c.autocorr(); df.corr(); df.cov(); c.nlargest(3)
    str(df); repr(c); str(df.head()); df.to_numpy(); c.tolist(); c.to_list(); c.round(2); c.astype(str)
    df.loc[df.index[0], "a"] = 1.0; df.iloc[0, 0] = df.iloc[0, 0]; df.replace(np.inf, np.nan)
    return df

def strategy_logic(row):
    value = row.get("a", 0.0)
    if pd.isna(value) or np.isnan(value) or math.isnan(value):
        return 0
    return 1 if row["Close"] > row.Close and row.name.month > 0 and "a" in row else -1
"""


class _Policy:
    """What the server set up and what every child must apply (each layer only where the self-test saw it hold)."""

    def __init__(
        self, roots: tuple[str, ...], seccomp: bytes | None, drop_to_nobody: bool, prctl: bool, faults: frozenset[str]
    ) -> None:
        self.roots, self.seccomp, self.drop_to_nobody = roots, seccomp, drop_to_nobody
        self.prctl, self.faults = prctl, faults


def serve(control_fd: int, harness_pid: int, warm_up: bool = True, faults: Sequence[str] = ()) -> None:
    """Fork-server main loop (entry point of the `python -I` process the harness starts).

    `warm_up=False` (a one-shot command's server, a handful of children) skips the warm-up: it
    costs ~25 ms on the command's critical path, and saves a child at most ~5 ms of pandas'
    first-call work (nothing for a simple block). `faults` names facilities to refuse as a
    machine without them would (layers.FAULTS; tests only).
    """
    refused = frozenset(faults)
    # Who we are, asked before any namespace: inside a user namespace everyone can look like root.
    host_uid, host_gid = os.getuid(), os.getgid()
    prctl = layers.has_prctl(refused)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the harness's business
    layers.die_with_parent(harness_pid, prctl)
    control = socket.socket(fileno=control_fd)
    if warm_up:
        _warm_up()
    report: dict[str, bool | str] = {}
    roots = layers.library_roots()
    try:
        seccomp: bytes | None = layers.build_seccomp_filter(refused)
        report["seccomp"] = True
    except OSError as exc:
        seccomp = None
        report["seccomp"] = f"unavailable ({exc})"
    report.update(layers.enter_namespaces(roots, host_uid, host_gid, refused))
    nobody = layers.can_drop_to_nobody(roots, report.get("filesystem_view") is True, host_uid)
    report["unprivileged_user"] = nobody
    policy = _Policy(layers.read_roots(roots), seccomp, nobody is True and host_uid == 0, prctl, refused)
    report.update(_self_test(policy))
    # Children then never touch the server's objects for GC: fewer copied pages per fork. No
    # collection first: it costs ~25 ms of a one-shot command's start and children ran no faster.
    gc.freeze()
    control.send(json.dumps({"op": "ready", "layers": report}).encode())
    _serve_loop(control, policy)


def _self_test(policy: _Policy) -> dict[str, bool | str]:
    """Apply the child layers once in a throwaway child; switch off in `policy` each one the machine refuses.

    Each layer then degrades on its own (the report says why), instead of every evaluation failing
    on the first refusal. A layer that held here and fails in a later child is a set-up failure.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        found: dict[str, str] = {}
        try:
            os.close(read_end)
            refused = layers.set_limits(1 << 20, 5)  # whether each can be set; the values are the request's
            if refused:
                found["rlimits"] = f"partly unavailable ({', '.join(refused)} refused)"
            if policy.drop_to_nobody:
                try:
                    layers.drop_privileges(faults=policy.faults)
                except OSError as exc:
                    found["unprivileged_user"] = f"unavailable (changing to nobody failed: {exc})"
            if policy.seccomp is not None:
                try:
                    layers.apply_seccomp(policy.seccomp)
                except OSError as exc:
                    found["seccomp"] = f"unavailable ({exc})"
            os.write(write_end, json.dumps(found).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    if not answer:
        raise RuntimeError("the sandbox layer self-test died without a report")
    found = json.loads(answer)
    if "unprivileged_user" in found:
        policy.drop_to_nobody = False
    if "seccomp" in found:
        policy.seccomp = None
    return found


def _warm_up() -> None:
    index = pd.bdate_range("2000-01-03", periods=300, name="Date")
    prices = 100 + np.cumsum(np.random.default_rng(0).normal(0, 1, 300))
    frame = pd.DataFrame(
        {
            "Open": prices,
            "High": prices + 1,
            "Low": prices - 1,
            "Close": prices,
            "Adj Close": prices,
            "Volume": np.full(300, 1e6),
        },
        index=index,
    )
    namespace = exec_block(_WARM_UP)
    features, _, _ = compute_features_and_signals(namespace, frame, _WARM_UP)
    for name in features.columns:
        _column_as_float(features[name].astype(str))
        _column_as_float(features[name])
    _features_bytes(features, 10)


def _serve_loop(control: socket.socket, policy: _Policy) -> None:
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD wakes select via the fd
    children: dict[int, dict[str, Any]] = {}  # pid -> {job, deadline, killed, timed_out, started}
    try:
        while True:
            deadlines = [c["deadline"] for c in children.values() if not c["killed"]]
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                readable, _, _ = select.select([control, wake_read], [], [], wait)
            except InterruptedError:
                readable = []
            if wake_read in readable:
                while True:
                    try:
                        if not os.read(wake_read, 512):
                            break
                    except BlockingIOError:
                        break
            if control in readable:
                message, fds, _, _ = socket.recv_fds(control, 65536, 3)
                if not message:
                    return  # the harness has gone: stop everything
                request = json.loads(message)
                if request.get("op") == "spawn" and len(fds) == 3:
                    pid = _fork_child(request, fds, policy)
                    children[pid] = {
                        "job": request["job"],
                        "deadline": time.monotonic() + float(request["timeout_s"]),
                        "killed": False,
                        "timed_out": False,
                        "started": time.monotonic(),
                    }
                else:
                    for fd in fds:
                        os.close(fd)
                    for pid, child in children.items():
                        if request.get("op") == "kill" and child["job"] == request.get("job") and not child["killed"]:
                            os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still ours
                            child["killed"] = True
            now = time.monotonic()
            for pid, child in children.items():
                if not child["killed"] and now >= child["deadline"]:
                    os.kill(pid, signal.SIGKILL)
                    child["killed"] = child["timed_out"] = True
            while children:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
                if pid == 0:
                    break
                child = children.pop(pid, None)
                if child is None:
                    continue
                control.send(
                    json.dumps(
                        {
                            "op": "exited",
                            "job": child["job"],
                            "timed_out": child["timed_out"],
                            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                            "cpu_s": usage.ru_utime + usage.ru_stime,
                            "wall_s": time.monotonic() - child["started"],
                        }
                    ).encode()
                )
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)


def _fork_child(request: dict[str, Any], fds: list[int], policy: _Policy) -> int:
    """Fork one worker child for `request`; the server keeps none of the child's descriptors."""
    server_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = _INTERNAL_ERROR
        try:
            code = _child(request, fds, policy, server_pid)
        except BaseException:  # noqa: BLE001 - a harness bug: say it on the output pipe, which the harness reads
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    return pid


# ----------------------------------------------------------------------------------------------
# Worker child side.


def _child(request: dict[str, Any], fds: list[int], policy: _Policy, server_pid: int) -> int:
    """Set up the layers, read the job, run it, write the result; returns the exit code.

    SET_UP goes on the result pipe once every layer is in place and before any candidate code
    runs: a run that never sent it failed in the sandbox's own set-up, which no block can fake.
    """
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGCHLD, signal.SIGINT):
        signal.signal(number, signal.SIG_DFL)
    job_fd, result_fd, output_fd = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.dup2(job_fd, 3)
    os.dup2(result_fd, 4)
    os.closerange(5, 1 << 16)  # the control socket, the wake pipe, every other received descriptor
    layers.die_with_parent(server_pid, policy.prctl)
    layers.make_undumpable(policy.prctl)
    job = _read_all(3)  # fd 3 stays open: a gate reads each later prefix from it
    layers.set_limits(int(request["memory_mb"]), int(request["cpu_s"]))  # what it refuses, the self-test reported
    disabled = set(request.get("disabled", ()))
    if policy.drop_to_nobody and "nobody" not in disabled:
        layers.drop_privileges(faults=policy.faults)
    if policy.seccomp is not None and "seccomp" not in disabled:
        layers.apply_seccomp(policy.seccomp)
    os.environ.clear()
    np.random.seed(0)  # legacy global RNG use stays reproducible between the full and prefix runs
    header, payload = _unpack(job, 1 << 30)
    del job
    os.write(4, SET_UP)
    seal = "audit_hook" not in disabled
    if header["kind"] == "probe":
        reply, ok = _pack({"status": "probe", "layers": _probe(policy, request)}, b""), True
    elif header["kind"] == "gate":
        reply, ok = _run_gate(header, payload, policy, seal)
    else:
        reply, ok = _run_job(header, payload, policy, seal)
    sys.stdout.flush()
    sys.stderr.flush()
    _write_all(4, reply)
    return 0 if ok else 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int) -> bytes:
    """Exactly `size` bytes from `fd` (a gate's next prefix): never a byte of what may come after."""
    chunks, left = [], size
    os.set_blocking(fd, True)  # whatever the block did to it
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the harness closed the job pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_all(fd: int) -> bytes:
    chunks = []
    expected = None
    received = 0
    while expected is None or received < expected:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
        if expected is None and received >= _PREFIX.size:
            header_length, payload_length = _PREFIX.unpack(b"".join(chunks)[: _PREFIX.size])
            expected = _PREFIX.size + header_length + payload_length
    return b"".join(chunks)


def _job_arrays(header: dict[str, Any], rows: int, payload: bytes) -> tuple[np.ndarray, list[np.ndarray]]:
    """The index stamps and column arrays of `rows` bars laid out as _rows_bytes wrote them."""
    stamps = np.frombuffer(payload, dtype=np.int64, count=rows)
    arrays, offset = [], 8 * rows
    for dtype in header["dtypes"]:
        values = np.frombuffer(payload, dtype=dtype, count=rows, offset=offset).copy()
        offset += values.nbytes
        arrays.append(values)
    return stamps, arrays


def _job_frame(
    header: dict[str, Any], stamps: np.ndarray, arrays: list[np.ndarray], columns: pd.Index | None = None
) -> pd.DataFrame:
    """The candidate's frame with its own copy of the values, built alike for the full run and every prefix.

    `columns` is the column Index made once for many frames (a copy goes into each; making one costs more).
    """
    index = pd.DatetimeIndex(stamps.view(f"datetime64[{header['unit']}]").copy(), name=header["index_name"])
    if (
        arrays and len(set(header["dtypes"])) == 1
    ):  # the one block a dict of such columns consolidates into, built faster
        names = columns.copy() if columns is not None else pd.Index(header["columns"])
        return pd.DataFrame(np.column_stack(arrays), index=index, columns=names, copy=False)  # column_stack copied
    return pd.DataFrame(dict(zip(header["columns"], arrays)), index=index)


def _run_job(header: dict[str, Any], payload: bytes, policy: _Policy, seal: bool) -> tuple[bytes, bool]:
    """The candidate's full run; returns (framed reply, ok)."""
    source = header["source"]
    frame = _job_frame(header, *_job_arrays(header, int(header["rows"]), payload))
    del payload
    started = time.perf_counter()
    try:
        code = compile_block(source)
        if seal:
            layers.install_audit_hook(policy.roots, code)  # sealed from here on
        namespace = exec_block(code, source)
        mark = time.perf_counter()
        features, warnings = compute_features(namespace, frame, source)
        features_s = time.perf_counter() - mark  # what each gate prefix repeats, on fewer bars
        signals = state_free_signals(namespace, features, source, code)
        columns = _limited_columns(features, int(header["max_columns"]))
        reply = {
            "status": "ok",
            "columns": columns,
            "warnings": warnings,
            "timings": {"run_s": time.perf_counter() - started, "features_s": features_s},
        }
        return _pack(reply, np.ascontiguousarray(signals, dtype="<f8").tobytes() + _features_bytes(features)), True
    except BaseException as exc:  # noqa: BLE001 - anything the candidate raises is its outcome
        return _error_reply(exc, source), False


def _run_gate(header: dict[str, Any], payload: bytes, policy: _Policy, seal: bool) -> tuple[bytes, bool]:
    """The look-ahead gate: generate_features on each prefix in ascending order, one step frame per cut.

    Each prefix's new bars are read only once the previous step is written (the harness sends them
    then), and each prefix runs in a fresh namespace from a freshly seeded legacy RNG, so a run
    sees neither a later bar nor anything a longer run could have left behind.
    """
    source, cuts, tail, whole = header["source"], header["cuts"], int(header["tail_rows"]), set(header["whole"])
    row_bytes = 8 + sum(np.dtype(d).itemsize for d in header["dtypes"])
    # Room for every bar the last prefix will hold, filled only as each prefix's bars arrive.
    stamps = np.empty(cuts[-1], dtype=np.int64)
    arrays = [np.empty(cuts[-1], dtype=d) for d in header["dtypes"]]
    _store_rows(stamps, arrays, 0, _job_arrays(header, cuts[0], payload))
    del payload
    names = pd.Index(header["columns"])
    try:
        code = compile_block(source)
        if seal:
            layers.install_audit_hook(policy.roots, code)
        # One strategy_logic pass in date order across the prefixes: each bar's signal is computed on the first
        # prefix that holds it, so no state (shared module objects included) can hold a later bar.
        strategy_space = exec_block(code, source)
        np.random.seed(0)
        strategy_rng = np.random.get_state()
        done = 0
        for at, cut in enumerate(cuts):
            if at:
                added = cut - cuts[at - 1]
                _store_rows(stamps, arrays, cuts[at - 1], _job_arrays(header, added, _read_exact(3, added * row_bytes)))
            np.random.seed(0)
            prefix = _job_frame(header, stamps[:cut], [a[:cut] for a in arrays], names)
            features, _ = compute_features(
                exec_block(code, source), prefix, source, copy=False
            )  # the frame was built for this one call
            columns = _limited_columns(features, int(header["max_columns"]))
            start = 0 if cut in whole else max(0, cut - tail)
            values = _features_bytes(features, start)
            np.random.set_state(strategy_rng)
            signals = signals_of_rows(strategy_space, features, source, done)
            strategy_rng = np.random.get_state()
            _write_all(
                4,
                _pack(
                    {"status": "step", "cut": cut, "start": start, "columns": columns, "signal_start": done},
                    values + np.ascontiguousarray(signals, dtype="<f8").tobytes(),
                ),
            )
            done = cut
    except BaseException as exc:  # noqa: BLE001 - the block's failure on a prefix is its outcome
        return _error_reply(exc, source), False
    return _pack({"status": "done"}, b""), True


def _limited_columns(features: pd.DataFrame, max_columns: int) -> list[str]:
    columns = [str(c) for c in features.columns]
    if len(columns) > max_columns:
        raise CandidateError(
            f"generate_features returned {len(columns)} columns; at most {max_columns} are allowed",
            status="runtime_error",
        )
    return columns


def _error_reply(exc: BaseException, source: str) -> bytes:
    error = exc if isinstance(exc, CandidateError) else candidate_error(exc, source, "while running the block")
    return _pack(
        {"status": error.status, "message": str(error), "error_type": error.error_type, "traceback": error.traceback},
        b"",
    )


def _store_rows(
    stamps: np.ndarray, arrays: list[np.ndarray], at: int, rows: tuple[np.ndarray, list[np.ndarray]]
) -> None:
    """Write bars received for a prefix into the gate's buffers from row `at` on."""
    new_stamps, new_arrays = rows
    stamps[at : at + len(new_stamps)] = new_stamps
    for buffer, values in zip(arrays, new_arrays):
        buffer[at : at + len(values)] = values


def _features_bytes(features: pd.DataFrame, start: int = 0) -> bytes:
    """Every column's rows from `start` as float64 (_column_as_float), column after column, as little-endian bytes."""
    part = features.iloc[start:] if start else features
    if all(isinstance(dtype, np.dtype) and dtype.kind in "biuf" for dtype in part.dtypes):
        # Plain numbers (the usual case): one conversion of all columns, the same floats as column by column.
        return np.ascontiguousarray(part.to_numpy(dtype=np.float64).T, dtype="<f8").tobytes()
    return b"".join(_column_as_float(features[c], start).astype("<f8").tobytes() for c in features.columns)


def _column_as_float(series: pd.Series, start: int = 0) -> np.ndarray:
    """A feature column (its rows from `start`) as float64 for the look-ahead comparison, by VALUE whatever its dtype.

    True is 1.0 whether the column is bool or object (a `where(mask)` column is bool on one prefix and
    object on another), None and NaN are NaN, and other values become hashes of their repr.
    """
    dtype = series.dtype
    values = series.to_numpy()[start:]  # a view for numpy dtypes: only the compared rows are converted
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return values.astype(np.float64)
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    ):
        try:  # nullable extension dtypes: pd.NA becomes NaN
            return series.to_numpy(dtype=np.float64, na_value=np.nan)[start:]
        except (TypeError, ValueError):
            pass
    if values.dtype.kind in "mM":
        out = values.view("i8").astype(np.float64)
        out[np.isnat(values)] = np.nan
        return out
    odd = next((v for v in values.tolist() if not pd.api.types.is_scalar(v)), None)
    if odd is not None:  # an array's repr hides its middle, so it could carry the future past the comparison
        raise CandidateError(
            f"feature column {str(series.name)[:80]!r} holds a {type(odd).__name__} in a cell; a feature "
            "column holds one number (or one label) per bar",
            status="runtime_error",
            error_type="TypeError",
        )
    return np.array([_value_as_float(v) for v in values.tolist()], dtype=np.float64)


def _is_missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _value_as_float(value: Any) -> float:
    if _is_missing(value):
        return np.nan
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        try:
            return float(value)
        except OverflowError:
            pass
    return float(zlib.crc32(repr(value).encode("utf-8", "replace")))


def _probe(policy: _Policy, request: dict[str, Any]) -> dict[str, bool | str]:
    """Measure, from inside a child with its layers applied, which of them hold."""
    report: dict[str, bool | str] = {}
    uid = os.getuid()
    report["unprivileged_user"] = True if uid != 0 else "runs as root (uid 0)"
    expected = {
        resource.RLIMIT_FSIZE: 0,
        resource.RLIMIT_NPROC: 0,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_AS: int(request["memory_mb"]) * 1024 * 1024,
    }
    wrong = [str(k) for k, v in expected.items() if resource.getrlimit(k) != (v, v)]
    report["rlimits"] = True if not wrong else f"not applied ({', '.join(wrong)})"
    report["scrubbed_env"] = True if not os.environ else f"{len(os.environ)} variables left"
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        report["seccomp"] = "not enforced (a socket could be created)"
    except PermissionError:
        report["seccomp"] = True
    except OSError as exc:
        report["seccomp"] = f"not enforced ({exc})"
    if os.path.exists("/proc/self") or os.path.exists("/etc/passwd"):
        report["filesystem_view"] = "not enforced (/proc or /etc visible)"
    layers.install_audit_hook(policy.roots, compile("", "<probe>", "exec"))
    try:
        os.listdir("/")
        report["audit_hook"] = "not enforced (listing / worked)"
    except PermissionError:
        report["audit_hook"] = True
    return report


__all__ = [
    "CandidateOutput",
    "Limits",
    "RunResult",
    "fork_server",
    "prestart",
    "probe_layers",
    "run_candidate",
    "serve",
    "simulate_faults",
]
