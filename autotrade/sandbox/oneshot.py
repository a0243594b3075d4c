"""One-shot processes (`autotrade backtest`, `python trade.py`): evaluate once, start and end fast.

Why: the evaluation itself takes ~0.1 s, start-up much more. typer, rich and pydantic (typer
coerces every option through it) cost ~0.2 s, pandas ~0.26 s, a fresh sandbox server another
~0.3 s, and one interpreter imports one thing after another.

`autotrade backtest` therefore forks a helper as the console script's first act (`start_for_command`,
called by autotrade.cli.entry before typer is imported). The helper imports pandas and forks the sandbox
server while the CLI parses its arguments; the CLI sends the block and settings
(`evaluate`), the helper loads the prepared data, runs the one evaluation path and sends back
the record, and the CLI renders it. Without a helper (tests calling the command in-process)
`evaluate` does the same work in the caller. `python trade.py` has pandas imported by the file
itself, so it only forks its server (`begin_one_shot`). Both skip the interpreter's final garbage
collections at exit, and their servers skip the warm-up (worker.serve).

Processes and what each holds:
- CLI: arguments, the block's text, the rendered result. It never imports pandas.
- helper: a fork of the CLI taken before anything but the command line was read; it is the
  trusted harness's evaluating half (the data, test rows included when asked for, and the
  user's environment, as the harness has).
- sandbox server: forked from the helper (or from `python trade.py`) after pandas is imported and
  before the block, the data or any file is read. Before any candidate runs it overwrites in
  place every inherited copy of the environment (layers.scrub_inherited_environment): an exported
  OPENAI_API_KEY cannot be found even by reading raw memory; and it keeps no harness descriptor.
  It still shares code with the harness (the modules imported so far) and the command line.
  The trade-off against a fresh interpreter (~0.3 s saved per command) is that residue: freed
  Python objects and glibc copies of environment values the harness touched before forking
  (it reads no secret before then). The research loop (`run`/`resume`), whose harness has read
  the API key from .env, and `doctor` keep the fresh-interpreter server: start-up is paid once.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import gc
import json
import os
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from autotrade.errors import AutotradeError

if TYPE_CHECKING:
    from autotrade.evaluation.evaluate import Evaluation

_LENGTH = struct.Struct("<Q")
_PR_SET_PDEATHSIG = 1
_COMMANDS = frozenset({"backtest"})  # one-shot commands that evaluate once and exit


@dataclasses.dataclass(frozen=True)
class Report:
    """An evaluation as the helper sends it back: what the CLI prints (Evaluation's reading surface)."""

    status: str
    message: str
    windows: dict[str, dict[str, float]]  # metrics per window, exact floats (NaN and infinities kept)
    record: dict[str, Any]  # Evaluation.to_record()

    @property
    def ok(self) -> bool:
        """True when the candidate passed every gate."""
        return self.status == "ok"

    def to_record(self) -> dict[str, Any]:
        """The JSON-safe record (a copy the caller may extend)."""
        return dict(self.record)


@dataclasses.dataclass
class _Helper:
    pid: int
    sock: socket.socket


_helper: _Helper | None = None


def start_for_command(argv: Sequence[str]) -> None:
    """Fork the evaluating helper now when `argv` runs a one-shot command (call before importing typer)."""
    global _helper
    command = next((word for word in argv[1:] if not word.startswith("-")), None)
    if command not in _COMMANDS or "--help" in argv or _helper is not None:
        return
    ours, theirs = socket.socketpair()
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:  # no process to spare: the command evaluates in this process instead
        ours.close()
        theirs.close()
        return
    if pid == 0:
        ours.close()
        _helper_main(theirs, parent)
    theirs.close()
    _helper = _Helper(pid, ours)
    atexit.register(gc.freeze)  # see begin_one_shot


def begin_one_shot() -> None:
    """Start a process that evaluates once and exits (`python trade.py`): fork the sandbox server now.

    Call it before any data or secret is read (worker.fork_server). At exit the interpreter's
    final garbage collections over pandas' (or typer's and rich's) objects cost ~40-50 ms; they
    are skipped (gc.freeze). Output is flushed after the exit hooks run, and a one-shot process
    leaves no file open that only a collection would close.
    """
    from autotrade.sandbox.worker import fork_server

    fork_server()
    atexit.register(gc.freeze)


def evaluate(
    block: str, data_dir: Path, windows: Sequence[str], fill: str, cost_bps: float, timeout_s: float
) -> Evaluation | Report:
    """Evaluate `block` on the prepared data in `data_dir`: in the helper when there is one, else here."""
    request = {
        "block": block,
        "data_dir": str(data_dir),
        "windows": list(windows),
        "fill": fill,
        "cost_bps": cost_bps,
        "timeout_s": timeout_s,
    }
    helper = _take_helper()
    if helper is None:
        from autotrade.sandbox.worker import prestart

        prestart()  # the sandbox server imports pandas in parallel with our own work
        return _evaluate_here(request)
    reply = None
    try:
        _send(helper.sock, request)
        reply = _receive(helper.sock)
    finally:
        helper.sock.close()
        if reply is None:  # interrupted, or the helper died: do not wait for its evaluation
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper.pid, signal.SIGKILL)
            os.waitpid(helper.pid, 0)
        # Otherwise the helper is exiting on its own; its teardown (~10 ms) need not delay the output.
    if reply is None:
        raise AutotradeError("the evaluation helper stopped unexpectedly")
    if "error" in reply:
        raise _rebuilt_error(reply["error"]) from _RemoteTraceback(reply["error"]["traceback"])
    return Report(reply["status"], reply["message"], reply["windows"], reply["record"])


def _take_helper() -> _Helper | None:
    """This process's helper, used once; None in a process that did not start one."""
    global _helper
    helper, _helper = _helper, None
    return helper


def _evaluate_here(request: dict[str, Any]) -> Evaluation:
    from autotrade.data.prepared import load_prepared
    from autotrade.engine.backtest import BacktestSettings, Fill
    from autotrade.evaluation.evaluate import EvalSettings, evaluate_block, finish_gate

    data = load_prepared(request["data_dir"])
    settings = EvalSettings(
        backtest=BacktestSettings(fill=Fill(request["fill"]), cost_bps=request["cost_bps"]),
        timeout_s=request["timeout_s"],
    )
    windows = tuple(request["windows"])
    evaluation = evaluate_block(request["block"], data, windows=windows, settings=settings)
    return finish_gate(evaluation, request["block"], data, settings, windows)  # a one-off verdict is a whole one


def _helper_main(sock: socket.socket, parent: int) -> NoReturn:
    """The helper: fork the sandbox server, then answer the CLI's one request and exit."""
    code = 1
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # never outlive the CLI
        if os.getppid() != parent:
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the CLI's; we die with it
        from autotrade.sandbox.worker import fork_server

        fork_server()  # before reading the request or any data: see the module docstring
        request = _receive(sock)
        if request is not None:
            _send(sock, _answer(request))
        code = 0
    except BaseException:  # noqa: BLE001 - a helper bug: the CLI sees the helper stop and says so
        traceback.print_exc()
    finally:
        sys.stderr.flush()  # not stdout: its buffer is the CLI's, copied at the fork
        os._exit(code)  # no atexit hooks, no finalisation: the server dies with us (parent-death signal)


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    try:
        evaluation = _evaluate_here(request)
    except AutotradeError as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}}
    return {
        "status": str(evaluation.status),
        "message": evaluation.message,
        "windows": evaluation.windows,
        "record": evaluation.to_record(),
    }


class _RemoteTraceback(Exception):
    """The helper's traceback, chained under the error it raised (shown with --debug)."""

    def __str__(self) -> str:
        return f"\n(in the evaluation helper)\n{self.args[0]}"


def _rebuilt_error(error: dict[str, Any]) -> AutotradeError:
    """The helper's AutotradeError as the same class where its constructor takes just the message."""
    from autotrade import errors

    kind = getattr(errors, str(error.get("type")), AutotradeError)
    message = str(error.get("message"))
    try:
        rebuilt = kind(message) if isinstance(kind, type) and issubclass(kind, AutotradeError) else None
    except TypeError:  # needs more than a message (e.g. CandidateError's status)
        rebuilt = None
    return rebuilt if rebuilt is not None else AutotradeError(message)


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()  # NaN and infinities stay exact (Python's JSON extension)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _receive(sock: socket.socket) -> Any:
    """One message, or None when the other side has gone."""
    head = _read_exactly(sock, _LENGTH.size)
    if head is None:
        return None
    body = _read_exactly(sock, _LENGTH.unpack(head)[0])
    return None if body is None else json.loads(body)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


__all__ = ["Report", "begin_one_shot", "evaluate", "start_for_command"]
