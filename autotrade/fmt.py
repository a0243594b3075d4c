"""Numbers, dates and one-line messages as the product prints them: CLI, report, meta.json and learnings alike."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type here: this module stays importable without pandas' start-up cost
    import pandas as pd


def pct(value: float | None, digits: int = 2, missing: str = "—") -> str:
    """A fraction as a signed percentage (0.0312 -> '+3.12%'); `missing` when absent or not finite."""
    return missing if value is None or not math.isfinite(value) else f"{value * 100:+.{digits}f}%"


def num(value: float | None, digits: int = 2, missing: str = "—") -> str:
    """A number with fixed decimals (a ratio, a score, a statistic); `missing` when absent or not finite."""
    return missing if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def hms(whole_seconds: int) -> str:
    """Whole seconds as h:mm:ss (3725 -> '1:02:05'); callers choose whether to round or truncate."""
    return f"{whole_seconds // 3600}:{whole_seconds % 3600 // 60:02d}:{whole_seconds % 60:02d}"


def first_line(text: str, limit: int = 200) -> str:
    """The first non-blank line of `text`, stripped and shortened to `limit` characters (the last one '…')."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def iso_moment(moment: pd.Timestamp) -> str:
    """A timestamp as an ISO date, or as date and time (to the second) when it is not at midnight."""
    return moment.strftime("%Y-%m-%d") if moment == moment.normalize() else moment.strftime("%Y-%m-%d %H:%M:%S")
