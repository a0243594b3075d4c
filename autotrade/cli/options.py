"""Option types shared by the commands that evaluate strategies (backtest, run, resume)."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class FillChoice(StrEnum):
    """When an order fills; mirrors backtest.Fill without importing the engine at --help time."""

    NEXT_OPEN = "next-open"
    CLOSE = "close"


FillOpt = Annotated[
    FillChoice,
    typer.Option(
        "--fill",
        help="When a signal trades: 'next-open' (the bar after the signal, honest) or 'close' (same bar, the original harness).",
    ),
]
MAX_COST_BPS = 1000.0


def cost_bps(text: str) -> float:
    """--cost-bps: a finite number of basis points in [0, MAX_COST_BPS]; typer's range check calls nan 'above 1000'."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise typer.BadParameter(f"{text!r}: must be a finite number of basis points (0 to {MAX_COST_BPS:g})")
    if not 0.0 <= value <= MAX_COST_BPS:
        raise typer.BadParameter(f"{text!r} is out of range (0 to {MAX_COST_BPS:g})")
    return value


CostOpt = Annotated[
    float,
    typer.Option(
        "--cost-bps",
        parser=cost_bps,
        help=f"Cost per side in basis points (commission plus slippage), 0 to {MAX_COST_BPS:g}.",
    ),
]
DataDirOpt = Annotated[
    Path,
    typer.Option("--data", help="Directory holding the prepared data (from `autotrade prepare`)."),
]
EvalTimeoutOpt = Annotated[
    float,
    typer.Option("--eval-timeout", min=1.0, help="Wall-clock seconds a candidate may run before it is killed."),
]
