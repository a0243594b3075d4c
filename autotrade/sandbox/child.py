"""The worker child: one run of a candidate, in a process forked by the fork server (server.py).

It applies its layers (rlimits, uid nobody, seccomp, an empty environment; layers.py), reads its
job from the harness, runs the block through execute.py, writes the framed result and exits with
os._exit (no atexit hooks). execute.py is the candidate's pure runtime (compile, exec, features and
signals, testable in-process); this module is what makes it a sandboxed process: descriptors,
layers, the job and reply wire format (protocol.py) and the audit seal around the candidate's code.
"""

from __future__ import annotations

import fcntl
import os
import resource
import signal
import socket
import sys
import time
import zlib
from typing import Any

import numpy as np
import pandas as pd

from autotrade.errors import CandidateError
from autotrade.sandbox import layers
from autotrade.sandbox.execute import (
    candidate_error,
    compile_block,
    compute_features,
    exec_block,
    signals_of_rows,
    state_free_signals,
)
from autotrade.sandbox.protocol import PREFIX, SET_UP, job_arrays, pack, unpack


class Policy:
    """What the server set up and what every child must apply (each layer only where the self-test saw it hold)."""

    def __init__(
        self, roots: tuple[str, ...], seccomp: bytes | None, drop_to_nobody: bool, prctl: bool, faults: frozenset[str]
    ) -> None:
        self.roots, self.seccomp, self.drop_to_nobody = roots, seccomp, drop_to_nobody
        self.prctl, self.faults = prctl, faults


def run_child(request: dict[str, Any], fds: list[int], policy: Policy, server_pid: int) -> int:
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
    layers.close_descriptors_from(5)  # the control socket, the wake pipe, every other received descriptor
    layers.die_with_parent(server_pid, policy.prctl)
    layers.make_undumpable(policy.prctl, policy.faults)
    job = _read_all(3)  # fd 3 stays open: a gate reads each later prefix from it
    layers.set_limits(int(request["memory_mb"]), int(request["cpu_s"]))  # what it refuses, the self-test reported
    disabled = set(request.get("disabled", ()))
    if policy.drop_to_nobody and "nobody" not in disabled:
        layers.drop_privileges(faults=policy.faults)
    if policy.seccomp is not None and "seccomp" not in disabled:
        layers.apply_seccomp(policy.seccomp)
    os.environ.clear()
    np.random.seed(0)  # legacy global RNG use stays reproducible between the full and prefix runs
    header, payload = unpack(job, 1 << 30)
    del job
    os.write(4, SET_UP)
    seal = "audit_hook" not in disabled
    if header["kind"] == "probe":
        reply, ok = pack({"status": "probe", "layers": _probe(policy, request)}, b""), True
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
        if expected is None and received >= PREFIX.size:
            header_length, payload_length = PREFIX.unpack(b"".join(chunks)[: PREFIX.size])
            expected = PREFIX.size + header_length + payload_length
    return b"".join(chunks)


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
    return pd.DataFrame(dict(zip(header["columns"], arrays, strict=True)), index=index)


def _run_job(header: dict[str, Any], payload: bytes, policy: Policy, seal: bool) -> tuple[bytes, bool]:
    """The candidate's full run; returns (framed reply, ok)."""
    source = header["source"]
    frame = _job_frame(header, *job_arrays(header, int(header["rows"]), payload))
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
        return pack(reply, np.ascontiguousarray(signals, dtype="<f8").tobytes() + features_bytes(features)), True
    except BaseException as exc:  # noqa: BLE001 - anything the candidate raises is its outcome
        return _error_reply(exc, source), False


def _run_gate(header: dict[str, Any], payload: bytes, policy: Policy, seal: bool) -> tuple[bytes, bool]:
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
    _store_rows(stamps, arrays, 0, job_arrays(header, cuts[0], payload))
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
                _store_rows(stamps, arrays, cuts[at - 1], job_arrays(header, added, _read_exact(3, added * row_bytes)))
            np.random.seed(0)
            prefix = _job_frame(header, stamps[:cut], [a[:cut] for a in arrays], names)
            features, _ = compute_features(
                exec_block(code, source), prefix, source, copy=False
            )  # the frame was built for this one call
            columns = _limited_columns(features, int(header["max_columns"]))
            start = 0 if cut in whole else max(0, cut - tail)
            values = features_bytes(features, start)
            np.random.set_state(strategy_rng)
            signals = signals_of_rows(strategy_space, features, source, done)
            strategy_rng = np.random.get_state()
            _write_all(
                4,
                pack(
                    {"status": "step", "cut": cut, "start": start, "columns": columns, "signal_start": done},
                    values + np.ascontiguousarray(signals, dtype="<f8").tobytes(),
                ),
            )
            done = cut
    except BaseException as exc:  # noqa: BLE001 - the block's failure on a prefix is its outcome
        return _error_reply(exc, source), False
    return pack({"status": "done"}, b""), True


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
    return pack(
        {"status": error.status, "message": str(error), "error_type": error.error_type, "traceback": error.traceback},
        b"",
    )


def _store_rows(
    stamps: np.ndarray, arrays: list[np.ndarray], at: int, rows: tuple[np.ndarray, list[np.ndarray]]
) -> None:
    """Write bars received for a prefix into the gate's buffers from row `at` on."""
    new_stamps, new_arrays = rows
    stamps[at : at + len(new_stamps)] = new_stamps
    for buffer, values in zip(arrays, new_arrays, strict=True):
        buffer[at : at + len(values)] = values


def features_bytes(features: pd.DataFrame, start: int = 0) -> bytes:
    """Every column's rows from `start` as float64 (_column_as_float), column after column, as little-endian bytes."""
    part = features.iloc[start:] if start else features
    if all(isinstance(dtype, np.dtype) and dtype.kind in "biuf" for dtype in part.dtypes):
        # Plain numbers (the usual case): one conversion of all columns, the same floats as column by column.
        return np.ascontiguousarray(part.to_numpy(dtype=np.float64).T, dtype="<f8").tobytes()
    return b"".join(column_as_float(features[c], start).astype("<f8").tobytes() for c in features.columns)


def column_as_float(series: pd.Series, start: int = 0) -> np.ndarray:
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


def _probe(policy: Policy, request: dict[str, Any]) -> dict[str, bool | str]:
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


__all__ = ["Policy", "column_as_float", "features_bytes", "run_child"]
