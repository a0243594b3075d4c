"""A real model server for tests: llama.cpp's own HTTP server (through the `xllamacpp` wheel) serving SmolLM2-135M.

Use it through the session-scoped `llama_server` fixture (imported in conftest.py). It yields a `LlamaServer`
whose `base_url` (ending in /v1) is what OPENAI_BASE_URL should be. The tests that use it skip, with a line
saying how to get it, when `xllamacpp` is not installed or the model file is not found:

- the model: `python scripts/fetch_test_model.py` (into ~/.cache/autotrade/models), or AUTOTRADE_TEST_GGUF
  naming the .gguf file;
- the server: `pip install -e '.[test]'` (Linux x86_64 and aarch64 only: xllamacpp has no recent wheel elsewhere).

With AUTOTRADE_TEST_REQUIRE_SERVER=1 (CI sets it) a missing server or model fails the tests instead: CI must not
pass by skipping them.

The server runs in a child process (this file, run as a script), never inside pytest: its OpenMP threads and
its ~300 MB of model and KV cache would otherwise be inherited by every sandbox fork server the suite starts,
and its C++ log would go to pytest's stderr. The child writes its log to a file, prints its address once the
model is loaded, and stops when its stdin closes, so a killed pytest never leaves a server behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_DIR = Path("~/.cache/autotrade/models")  # where scripts/fetch_test_model.py puts it by default
N_PARALLEL = 2
N_CTX = 4096  # in all: llama.cpp splits it evenly into one context per slot (kv_unified off)
# One thread, not one per core: on a 2-core machine shared with other work (CI, pytest itself, other jobs)
# llama.cpp's threads wait for each other at every layer, and 2 threads measured 10x slower than 1 here
# (3.8 against 40 tokens/s generating, 30 against 55-73 tokens/s reading the prompt).
THREADS = 1
START_TIMEOUT_S = 120.0
READY = "listening on "


@dataclass(frozen=True)
class LlamaServer:
    """A running server: `base_url` ends in /v1; `root` is the server's own root (/props, /slots)."""

    base_url: str
    root: str
    model_id: str
    n_parallel: int
    n_ctx_per_slot: int
    started_in_s: float  # from spawning the child to /v1/models answering
    log: Path


def find_gguf() -> Path | None:
    """The test model: AUTOTRADE_TEST_GGUF when set, else the fetch script's cache; None when absent."""
    named = os.environ.get("AUTOTRADE_TEST_GGUF")
    path = Path(named).expanduser() if named else CACHE_DIR.expanduser() / GGUF_NAME
    return path if path.is_file() else None


def skip_reason() -> str | None:
    """Why the real-server tests cannot run here, on one line; None when they can."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "no real model server: xllamacpp is not installed (pip install -e '.[test]', Linux x86_64/aarch64)"
    if find_gguf() is None:
        where = os.environ.get("AUTOTRADE_TEST_GGUF") or str(CACHE_DIR / GGUF_NAME)
        return f"no test model at {where}: run `python scripts/fetch_test_model.py` (or set AUTOTRADE_TEST_GGUF)"
    return None


def get_json(url: str, timeout_s: float = 5.0) -> object:
    """GET a URL on the test server and parse its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback only
        return json.load(response)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The real llama.cpp server on 127.0.0.1 (a free port), serving SmolLM2-135M, for the whole session."""
    reason = skip_reason()
    if reason and os.environ.get("AUTOTRADE_TEST_REQUIRE_SERVER") == "1":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    gguf = find_gguf()
    assert gguf is not None
    with start_server(gguf, tmp_path_factory.mktemp("llama") / "server.log") as server:
        yield server


@contextlib.contextmanager
def start_server(gguf: Path, log: Path, n_parallel: int = N_PARALLEL, n_ctx: int = N_CTX) -> Iterator[LlamaServer]:
    """The server in its child process, `n_ctx` tokens of context split over `n_parallel` slots; stopped on exit.

    Its C++ log goes to `log`. The tests' fixture and benchmarks/bench_model.py both start it here."""
    started = time.monotonic()
    with log.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, __file__, str(gguf), str(n_parallel), str(n_ctx)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
        )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the child prints its address once the model is loaded, or dies
        if not line.startswith(READY):
            child.wait(timeout=START_TIMEOUT_S)
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the llama.cpp server did not start (exit {child.returncode}):\n{tail}")
        root = line.removeprefix(READY).strip()
        models = wait_for_models(f"{root}/v1/models", started + START_TIMEOUT_S)
        yield LlamaServer(
            base_url=f"{root}/v1",
            root=root,
            model_id=models[0],
            n_parallel=n_parallel,
            n_ctx_per_slot=n_ctx // n_parallel,
            started_in_s=time.monotonic() - started,
            log=log,
        )
    finally:
        stop(child)


def wait_for_models(url: str, deadline: float) -> list[str]:
    """The model ids at `url`, polled until it answers or the (monotonic) deadline passes."""
    while True:
        try:
            listed = get_json(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        assert isinstance(listed, dict)
        return [entry["id"] for entry in listed["data"]]


def stop(child: subprocess.Popen[str]) -> None:
    """Close the child's stdin (it then stops the server and exits); kill it if it does not within 10 s."""
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    if child.stdout is not None:
        child.stdout.close()


def serve(gguf: str, n_parallel: int, n_ctx: int) -> None:
    """The child: serve `gguf` on a free loopback port, print `listening on ROOT`, and stop when stdin closes."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = gguf
    params.n_parallel = n_parallel
    params.n_ctx = n_ctx
    params.cpuparams.n_threads = THREADS
    params.cpuparams_batch.n_threads = THREADS
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the OS picks a free port; the server reports it, so there is no race for one
    server = xllamacpp.Server(params)  # returns once the model is loaded and the HTTP server listens
    print(f"{READY}{server.listening_address}", flush=True)
    sys.stdin.read()  # until the parent closes stdin (or dies)
    del server  # its destructor stops the HTTP server and the slots


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
