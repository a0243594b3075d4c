"""A trade.py runs on its own and prints the original harness's output contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from autotrade.candidate import baseline_source


def test_trade_py_prints_train_and_val_returns_then_json_lines(prepared_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "trade.py").write_text(baseline_source())
    env = {**os.environ, "AUTOTRADE_DATA": str(prepared_dir)}
    done = subprocess.run([sys.executable, "trade.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("train_return: ") and lines[1].startswith("val_return: ")
    windows = [json.loads(line)["window"] for line in lines[2:]]
    assert windows == ["train", "val"]
    assert "test" not in done.stdout


def test_trade_py_without_prepared_data_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "trade.py").write_text(baseline_source())
    env = {**os.environ, "AUTOTRADE_DATA": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "trade.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "autotrade prepare" in done.stderr
