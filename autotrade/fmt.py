"""Numbers as the product prints them: one rule for the CLI, the report and the learnings the model reads."""

from __future__ import annotations

import math


def pct(value: float | None, digits: int = 2, missing: str = "—") -> str:
    """A fraction as a signed percentage (0.0312 -> '+3.12%'); `missing` when absent or not finite."""
    return missing if value is None or not math.isfinite(value) else f"{value * 100:+.{digits}f}%"


def hms(whole_seconds: int) -> str:
    """Whole seconds as h:mm:ss (3725 -> '1:02:05'); callers choose whether to round or truncate."""
    return f"{whole_seconds // 3600}:{whole_seconds % 3600 // 60:02d}:{whole_seconds % 60:02d}"
