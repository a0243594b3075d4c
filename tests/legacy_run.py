"""The run directory main wrote at b5a6da9 (tests/fixtures/run_b5a6da9), copied into a working directory.

Every status (ok, parse_error, lookahead, rejected, runtime_error), a model endpoint, stopped at --max-iter 6:
what today's code must keep reading, reporting and resuming (tests/fixtures/make_run_b5a6da9.py made it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from autotrade.cli.app import app

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run_b5a6da9"
RECORDED_DATA = "/tmp/legacy/data"  # where the run's data lived when it was written
ITERATIONS = 6


def fixture_records() -> list[dict[str, Any]]:
    """The fixture's iter_<i>_results.json files as written, by iteration."""
    return [json.loads((FIXTURE / f"iter_{i}_results.json").read_text()) for i in range(ITERATIONS)]


def legacy_copy(root: Path) -> Path:
    """root/train/legacy: a copy of the fixture, its data prepared offline in root/data, its config pointing there."""
    data = root / "data"
    outcome = CliRunner().invoke(app, ["prepare", "--offline", "--data", str(data)])
    assert outcome.exit_code == 0, outcome.output
    run = root / "train" / "legacy"
    shutil.copytree(FIXTURE, run)
    config = run / "config.json"
    config.write_text(config.read_text(encoding="utf-8").replace(RECORDED_DATA, str(data)), encoding="utf-8")
    return run
