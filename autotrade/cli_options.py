"""Option types shared by the commands that evaluate strategies (backtest, run, resume)."""

from __future__ import annotations

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
CostOpt = Annotated[
    float,
    typer.Option("--cost-bps", min=0.0, max=1000.0, help="Cost per side in basis points (commission plus slippage)."),
]
DataDirOpt = Annotated[
    Path,
    typer.Option("--data", help="Directory holding the prepared data (from `autotrade prepare`)."),
]
EvalTimeoutOpt = Annotated[
    float,
    typer.Option("--eval-timeout", min=1.0, help="Wall-clock seconds a candidate may run before it is killed."),
]
