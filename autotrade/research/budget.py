"""Budgets: a run stops cleanly once its tokens or its research time reach what it was given.

Both are counted from what the run committed, so resume decides exactly as the run would have: tokens are the
prompt and completion tokens of the committed iterations (the records' and state.json's totals; replies whose
iteration was dropped at a stop are in the journal and the report's spend, not here), and research time is
state.json's `wall_s`, the seconds the run's sessions spent, summed over resumes (a stopped run's idle time
never counts). A budget is checked between iterations, so the iteration that reaches it completes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from autotrade.errors import ConfigError
from autotrade.research.config import RunSettings

TOKENS = "budget_tokens"  # state.json's stop_reason for each budget (the loop's StopReason values)
MINUTES = "budget_minutes"
# The limits resume may raise (never an evaluation rule): a run that reached one goes on.
RAISABLE = ("max_iter", TOKENS, MINUTES)


def spent_tokens(totals: Mapping[str, Any]) -> int:
    """Prompt plus completion tokens of the committed iterations (state.json's totals)."""
    return int(totals.get("prompt_tokens", 0) + totals.get("completion_tokens", 0))


def research_s(totals: Mapping[str, Any]) -> float:
    """Seconds of research the run's sessions spent, summed over resumes (state.json's totals)."""
    return float(totals.get("wall_s", 0.0))


def exhausted(settings: RunSettings, totals: Mapping[str, Any]) -> str | None:
    """The budget the committed totals reached (TOKENS or MINUTES), or None while both last."""
    if settings.budget_tokens is not None and spent_tokens(totals) >= settings.budget_tokens:
        return TOKENS
    if settings.budget_minutes is not None and research_s(totals) >= settings.budget_minutes * 60:
        return MINUTES
    return None


def spent_line(reason: str, settings: RunSettings, totals: Mapping[str, Any]) -> str:
    """Which budget ended the run and what it spent, in one clause."""
    if reason == TOKENS:
        return (
            f"spent its token budget ({spent_tokens(totals):,} of {settings.budget_tokens:,} tokens, "
            "prompt + completion)"
        )
    return f"spent its time budget ({research_s(totals) / 60:.2f} of {settings.budget_minutes:g} minutes of research)"


def raise_limits(settings: RunSettings, name: str, **asked: float | None) -> tuple[RunSettings, dict[str, Any]]:
    """The settings with the limits `asked` (keys of RAISABLE; None: left as they are) raised, and those that changed.

    ConfigError naming the flag when one would be lowered, or set on a run that ran without it (a new limit on a run
    is a different experiment, not more of the same)."""
    changed: dict[str, Any] = {}
    for key, value in asked.items():
        assert key in RAISABLE, key
        current = getattr(settings, key)
        if value is None or value == current:
            continue
        flag = (
            f"--{key.replace('_', '-')} {value:g}" if isinstance(value, float) else f"--{key.replace('_', '-')} {value}"
        )
        if current is None:
            raise ConfigError(f"{flag}: run {name!r} runs without that budget; resume can only raise one it has")
        if value < current:
            unit = "iterations" if key == "max_iter" else "tokens" if key == TOKENS else "minutes"
            raise ConfigError(f"{flag}: run {name!r} already runs to {current} {unit}; it can only be raised")
        changed[key] = value
    return replace(settings, **changed), changed
