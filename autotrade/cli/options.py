"""Option types shared by the commands that evaluate strategies (backtest, run, resume)."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from autotrade.evaluation.objectives import OBJECTIVES
from autotrade.propose.policies import POLICIES
from autotrade.propose.reply_format import REPLY_FORMATS
from autotrade.registry import Registry


class FillChoice(StrEnum):
    """When an order fills; mirrors backtest.Fill without importing the engine at --help time."""

    NEXT_OPEN = "next-open"
    CLOSE = "close"


ReplyFormatChoice = StrEnum("ReplyFormatChoice", {name.upper(): name for name in REPLY_FORMATS})
ReplyFormatOpt = Annotated[
    ReplyFormatChoice,
    typer.Option(
        "--reply-format",
        help=(
            "How the model replies: 'text' (a ```python and a ```markdown block) or 'json' (one "
            '{"hypothesis", "code"} object, constrained by the server through response_format json_schema).'
        ),
    ),
]
FillOpt = Annotated[
    FillChoice,
    typer.Option(
        "--fill",
        help=(
            "When a signal trades: 'next-open' (the bar after the signal, honest) or 'close' (same bar, the original "
            "harness)."
        ),
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


def registered(registry: Registry[Any]) -> Callable[[str], str]:
    """A parser accepting a name in ``registry``, read when parsing, so every registered plug-in is a choice."""

    def parse(text: str) -> str:
        try:
            return registry.check(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parse


def choices(registry: Registry[Any]) -> str:
    """The metavar listing a registry's names, as typer lists an enum's."""
    return "<" + "|".join(registry.names()) + ">"


ObjectiveOpt = Annotated[
    str,
    typer.Option(
        "--objective",
        parser=registered(OBJECTIVES),
        metavar=choices(OBJECTIVES),
        help=f"What the population is ranked by: {OBJECTIVES.help()}.",
    ),
]
PolicyOpt = Annotated[
    str,
    typer.Option(
        "--policy", parser=registered(POLICIES), metavar=choices(POLICIES), help=f"Who proposes: {POLICIES.help()}."
    ),
]
BudgetTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--budget-tokens",
        min=1,
        metavar="N",
        help=(
            "Stop once the committed iterations spent N tokens (prompt + completion), between iterations; resume "
            "can raise it."
        ),
    ),
]
BudgetMinutesOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-minutes",
        metavar="M",
        help="Stop after M minutes of research time (summed over resumes), between iterations; resume can raise it.",
    ),
]
