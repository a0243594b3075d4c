"""The fork server as a process: how the harness starts a fresh one, holds it and stops it.

A fresh server (server.serve) is a new `python -I` with a scrubbed environment: it holds none of
the harness's memory, so no API key and no test rows to find. It spends ~0.3 s importing pandas,
once per pool (pool.SandboxPool).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
from typing import IO, Protocol

SERVER_ENV = {  # everything the fork server's environment holds: no secrets, one thread per library
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMEXPR_MAX_THREADS": "1",
}


class Process(Protocol):
    """What the harness needs of the server process (subprocess.Popen has it)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


@dataclasses.dataclass
class Server:
    """A started fork server as its harness sees it: the process, our end of the control socket, its log."""

    process: Process
    sock: socket.socket
    log: IO[bytes]  # the server's stderr: its last line says why it failed to start
    owner: int  # pid of the harness that started it (a forked harness must not use it)

    def stop(self) -> None:
        """Kill the server and every child it still has (its process group), reap it, close our ends."""
        self.sock.close()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.log.close()


def start_fresh(faults: frozenset[str] = frozenset()) -> Server:
    """Launch the server as a fresh `python -I` (scrubbed environment, cwd /, its own session); no waiting.

    `faults`: facilities the server refuses as a machine without them would (tests only).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    log = tempfile.TemporaryFile()
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    boot = (
        f"import sys; sys.path.insert(0, {package_root!r}); "
        # pandas imports pyarrow when it is installed (as verifiers' and many data stacks' dependencies pull it
        # in), and pyarrow starts a thread: a multi-threaded server cannot enter a user namespace (unshare fails
        # with EINVAL), so a normal user would lose the network namespace and the filesystem view. Candidates
        # may not import it anyway; pandas falls back to its own string storage.
        "sys.modules['pyarrow'] = None; "
        "from autotrade.sandbox.server import serve; "
        f"serve({theirs.fileno()}, {os.getpid()}, faults={sorted(faults)!r})"
    )
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", boot],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            pass_fds=(theirs.fileno(),),
            env=SERVER_ENV,
            cwd="/",
            start_new_session=True,
        )
    except BaseException:
        ours.close()
        log.close()
        raise
    finally:
        theirs.close()
    return Server(process, ours, log, os.getpid())


__all__ = ["SERVER_ENV", "Process", "Server", "start_fresh"]
