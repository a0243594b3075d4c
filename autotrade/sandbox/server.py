"""The fork server: a fresh `python -I` that forks one sandboxed worker child per run.

The harness (pool.py) starts it with a scrubbed environment (launch.py): it holds none of the
harness's memory, so no API key and no test rows to find. It imports pandas and warms it up once,
enters a network namespace and a read-only library-only filesystem view, self-tests the child
layers, then forks one child (child.py) per spawn request. It never sees candidate data: the
harness passes each child's pipes to it (SCM_RIGHTS) and writes the data straight into the
child. It enforces each child's wall-clock limit with SIGKILL and reports how each one ended.

Requests come on channels: the control socket it was started with, and any further socket the
harness passes over it (op "channel"), one per evaluation running at once, so that concurrent
evaluations each read only their own children's reports. An evaluation channel closing kills that
channel's children only; the control socket closing means the harness has gone: every child is
killed. A spawn the machine cannot fork (the process limit) is refused on its channel, and the
server serves on.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from autotrade.sandbox import layers
from autotrade.sandbox.child import Policy, column_as_float, features_bytes, run_child
from autotrade.sandbox.execute import compute_features_and_signals, exec_block

_INTERNAL_ERROR = 70  # exit code of a child whose set-up failed (EX_SOFTWARE)

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


def serve(control_fd: int, harness_pid: int, faults: Sequence[str] = ()) -> None:
    """Fork-server main loop (entry point of the `python -I` process the harness starts).

    `faults` names facilities to refuse as a machine without them would (layers.FAULTS; tests only).
    """
    refused = frozenset(faults)
    # Who we are, asked before any namespace: inside a user namespace everyone can look like root.
    host_uid, host_gid = os.getuid(), os.getgid()
    prctl = layers.has_prctl(refused)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the harness's business
    layers.die_with_parent(harness_pid, prctl)
    control = socket.socket(fileno=control_fd)
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
    policy = Policy(layers.read_roots(roots), seccomp, nobody is True and host_uid == 0, prctl, refused)
    report.update(_self_test(policy))
    # Children then never touch the server's objects for GC: fewer copied pages per fork. No
    # collection first: it costs ~25 ms of start-up and children ran no faster.
    gc.freeze()
    control.send(json.dumps({"op": "ready", "layers": report}).encode())
    _serve_loop(control, policy)


def _self_test(policy: Policy) -> dict[str, bool | str]:
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
        column_as_float(features[name].astype(str))
        column_as_float(features[name])
    features_bytes(features, 10)


def _serve_loop(control: socket.socket, policy: Policy) -> None:
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD wakes select via the fd
    channels = [control]  # control passes new channels; each evaluation spawns and hears on its own
    children: dict[int, dict[str, Any]] = {}  # pid -> {channel, job, deadline, killed, timed_out, started}
    refuse_fork = "fork_once" in policy.faults  # tests: the first worker child's fork fails
    try:
        while True:
            deadlines = [c["deadline"] for c in children.values() if not c["killed"]]
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                readable, _, _ = select.select([*channels, wake_read], [], [], wait)
            except InterruptedError:
                readable = []
            if wake_read in readable:
                while True:
                    try:
                        if not os.read(wake_read, 512):
                            break
                    except BlockingIOError:
                        break
            for channel in [c for c in channels if c in readable]:
                try:
                    message, fds, _, _ = socket.recv_fds(channel, 65536, 3)
                except OSError:  # a broken evaluation channel is a closed one; a broken control socket ends all
                    if channel is control:
                        raise
                    message, fds = b"", []
                if not message:
                    if channel is control:
                        return  # the harness has gone: stop everything
                    channels.remove(channel)  # its evaluation dropped it: its children go, and only they
                    channel.close()
                    for fd in fds:
                        os.close(fd)
                    _kill(children, lambda child, gone=channel: child["channel"] is gone)
                    continue
                request = json.loads(message)
                if request.get("op") == "spawn" and len(fds) == 3:
                    try:
                        pid = _fork_child(request, fds, policy, refuse=refuse_fork)
                    except OSError as exc:  # EAGAIN at the process limit: refuse this run, serve on
                        refusal = {"op": "refused", "job": request["job"], "reason": f"fork failed: {exc}"}
                        with contextlib.suppress(OSError):  # a channel its pool has just closed
                            channel.send(json.dumps(refusal).encode())
                        continue
                    finally:
                        refuse_fork = False
                    children[pid] = {
                        "channel": channel,
                        "job": request["job"],
                        "deadline": time.monotonic() + float(request["timeout_s"]),
                        "killed": False,
                        "timed_out": False,
                        "started": time.monotonic(),
                    }
                elif request.get("op") == "channel" and len(fds) == 1 and channel is control:
                    channels.append(socket.socket(fileno=fds[0]))
                else:
                    for fd in fds:
                        os.close(fd)
                    if request.get("op") == "kill":
                        job = request.get("job")
                        _kill(
                            children, lambda child, on=channel, job=job: child["channel"] is on and child["job"] == job
                        )
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
                if child is None or child["channel"] not in channels:
                    continue
                with contextlib.suppress(OSError):  # a channel its pool has just closed
                    child["channel"].send(
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


def _kill(children: dict[int, dict[str, Any]], chosen: Callable[[dict[str, Any]], bool]) -> None:
    """SIGKILL each chosen child not killed yet (not reaped yet either, so its pid is still ours)."""
    for pid, child in children.items():
        if chosen(child) and not child["killed"]:
            os.kill(pid, signal.SIGKILL)
            child["killed"] = True


def _fork_child(request: dict[str, Any], fds: list[int], policy: Policy, refuse: bool = False) -> int:
    """Fork one worker child for `request`; the server keeps none of the child's descriptors, whether or not the
    fork succeeded (OSError when it did not; `refuse` fails it as a machine at its process limit would)."""
    server_pid = os.getpid()
    try:
        if refuse:
            raise BlockingIOError(
                errno.EAGAIN, "Resource temporarily unavailable (fork refused by the fork_once fault)"
            )
        pid = os.fork()
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    if pid == 0:
        code = _INTERNAL_ERROR
        try:
            code = run_child(request, fds, policy, server_pid)
        except BaseException:  # noqa: BLE001 - a harness bug: say it on the output pipe, which the harness reads
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    return pid
