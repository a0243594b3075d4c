"""`autotrade backtest` as a user runs it: a real process, giving what the in-process evaluation gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.prepared import load_prepared
from autotrade.engine.backtest import BacktestSettings, Fill
from autotrade.evaluation.evaluate import EvalSettings, evaluate_block
from autotrade.sandbox.pool import SandboxPool

AUTOTRADE = str(Path(sys.executable).with_name("autotrade"))


def autotrade(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would."""
    return subprocess.run([AUTOTRADE, *args], capture_output=True, text=True, timeout=120)


def test_backtest_process_prints_what_the_in_process_evaluation_gives(
    prepared_dir: Path, sandbox_pool: SandboxPool
) -> None:
    done = autotrade("backtest", "--data", str(prepared_dir), "--json", "--window", "train", "--window", "test")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    settings = EvalSettings(backtest=BacktestSettings(fill=Fill.NEXT_OPEN, cost_bps=2.0), timeout_s=60.0)
    here = evaluate_block(
        extract_block(baseline_source()), load_prepared(prepared_dir), ("train", "test"), settings, pool=sandbox_pool
    ).to_record()
    assert printed["status"] == here["status"] == "ok"
    assert printed["windows"] == here["windows"] and list(printed["windows"]) == ["train", "test"]


def test_backtest_process_without_data_says_so_in_one_line(tmp_path: Path) -> None:
    done = autotrade("backtest", "--data", str(tmp_path / "none"))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: no prepared data in {tmp_path / 'none'}: run `autotrade prepare` first"
