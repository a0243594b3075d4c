"""One-shot `autotrade backtest`: the real process evaluates in its helper, exactly as in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from autotrade.candidate import baseline_source, extract_block
from autotrade.sandbox import oneshot

AUTOTRADE = str(Path(sys.executable).with_name("autotrade"))


def autotrade(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would (so the helper is forked)."""
    return subprocess.run([AUTOTRADE, *args], capture_output=True, text=True, timeout=120)


def test_backtest_process_prints_what_the_in_process_evaluation_gives(prepared_dir: Path) -> None:
    done = autotrade("backtest", "--data", str(prepared_dir), "--json", "--window", "train", "--window", "test")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    here = oneshot.evaluate(
        extract_block(baseline_source()),
        prepared_dir,
        ("train", "test"),
        fill="next-open",
        cost_bps=2.0,
        timeout_s=60.0,
    ).to_record()
    assert printed["status"] == here["status"] == "ok"
    assert printed["windows"] == here["windows"] and list(printed["windows"]) == ["train", "test"]


def test_backtest_process_without_data_says_so_in_one_line(tmp_path: Path) -> None:
    done = autotrade("backtest", "--data", str(tmp_path / "none"))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: no prepared data in {tmp_path / 'none'}: run `autotrade prepare` first"


def test_debug_shows_the_helpers_traceback_under_the_error(tmp_path: Path) -> None:
    done = autotrade("--debug", "backtest", "--data", str(tmp_path / "none"))
    assert done.returncode != 0
    assert "(in the evaluation helper)" in done.stderr and "load_prepared" in done.stderr
    assert "DataError: no prepared data in" in done.stderr


def test_helper_does_not_outlive_a_cli_that_stops_early(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker-for-this-test")
    done = autotrade("backtest", "--data", marker, "--no-such-flag")
    assert done.returncode == 2

    def left() -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        return found

    deadline = time.monotonic() + 5
    while left() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left() == []


def test_only_a_one_shot_command_forks_a_helper() -> None:
    for argv in ([AUTOTRADE, "run"], [AUTOTRADE, "report"], [AUTOTRADE, "backtest", "--help"]):
        oneshot.start_for_command(argv)
        assert oneshot._helper is None


def test_importing_the_cli_starts_no_process() -> None:
    probe = "import sys; sys.argv = ['autotrade', 'backtest']; import autotrade.cli.app as c; print(c.oneshot._helper)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "None", done.stderr
