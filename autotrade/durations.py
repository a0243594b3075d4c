"""Durations as users write them: seconds (`90`, `2.5`) or hours, minutes and seconds (`1h30m`, `30m`, `45s`)."""

from __future__ import annotations

import math
import re

from autotrade.errors import ConfigError

_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$")
MAX_DURATION_S = 7 * 86_400.0  # a week: longer is a typo, not a plan


def parse_duration(raw: str, label: str) -> float:
    """Seconds in `raw`; ConfigError when it is not a duration up to a week.

    `label` introduces the value in the message: "OPENAI_PATIENCE=" or "--endpoint-patience ".
    """
    text = raw.strip().lower().replace(" ", "")
    match = _DURATION.match(text) if text else None
    if match is None or not any(match.groupdict().values()):
        raise ConfigError(f"{label}{raw!r} is not a duration: give seconds or e.g. 90s, 30m, 1h30m")
    parts = match.groupdict()
    seconds = sum(float(parts[unit] or 0) * scale for unit, scale in (("h", 3600), ("m", 60), ("s", 1)))
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise ConfigError(f"{label}{raw!r} is longer than a week")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration the way parse_duration reads it: `1h30m`, `30m`, `45s`, `0.5s`."""
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, minutes, secs = whole // 3600, whole % 3600 // 60, whole % 60
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"
