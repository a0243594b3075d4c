"""`autotrade export`: runs' attempts as training data (rl.export does the work)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from autotrade.cli.common import RUNS_ROOT, note_on_stderr
from autotrade.status import Status


class ExportFormat(StrEnum):
    """What `--format` writes."""

    JSONL = "jsonl"


def export(
    names: Annotated[list[str], typer.Argument(metavar="RUN", help="One or more run names in train/.")],
    format_: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl: one JSON object per attempt.")
    ] = ExportFormat.JSONL,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: standard output).")
    ] = None,
    only: Annotated[
        list[Status] | None,
        typer.Option("--only", help="Keep only attempts with this status; repeat for several (e.g. --only ok)."),
    ] = None,
    min_reward: Annotated[
        float | None,
        typer.Option("--min-reward", metavar="X", help="Keep only attempts whose reward is at least X (never null)."),
    ] = None,
) -> None:
    """Export every committed attempt of runs, one line each: prompt messages, reply, reasoning, status, reward and
    its components, parent, model, tokens (for SFT, DPO or GRPO). Never anything of the held-out test window."""
    from autotrade.fileio import atomic_write_text
    from autotrade.research.rundir import RunDir
    from autotrade.rl.export import export_runs

    runs = [RunDir.open(RUNS_ROOT, name) for name in dict.fromkeys(names)]
    exported = export_runs(runs, only=set(only or ()), min_reward=min_reward)
    text = exported.jsonl()
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(output, text)
    note_on_stderr(
        f"exported {len(exported.lines)} attempt(s) from {exported.runs} run(s) ({exported.filtered} filtered out)"
        + (f" to {output}" if output is not None else "")
    )
