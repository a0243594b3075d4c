"""How an evaluation of several parts (assets × walk-forward folds) becomes one result: worst or mean.

The objective is measured on every part and aggregated (`aggregate_totals`); the headline metrics the prompt,
the gates and the tables read are each metric aggregated the same way (`aggregate_windows`), so a worst-case
run is judged, shown and gated on its worst part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

ACROSS = ("worst", "mean")
DEFAULT_ACROSS = "worst"
# Metrics where more is worse: the worst part is the one with the most.
LOWER_IS_BETTER = frozenset({"total_costs", "turnover"})
SUMMED = frozenset({"bars"})  # how many bars the parts span together


def aggregate_totals(totals: Sequence[float], across: str) -> float:
    """The objective over parts: the minimum (worst) or the mean; NaN when any part's value is unknown."""
    if not totals or any(not math.isfinite(value) for value in totals):
        return math.nan
    return min(totals) if across == "worst" else sum(totals) / len(totals)


def aggregate_windows(
    parts: Mapping[str, Mapping[str, Mapping[str, float]]], across: str
) -> dict[str, dict[str, float]]:
    """Each window's metrics aggregated over the parts holding it: worst (per metric) or mean; bars summed."""
    windows: dict[str, dict[str, float]] = {}
    names = [name for part in parts.values() for name in part]
    for window in dict.fromkeys(names):
        holders = [part[window] for part in parts.values() if window in part]
        merged: dict[str, float] = {}
        for metric in dict.fromkeys(key for metrics in holders for key in metrics):
            values = [
                float(m[metric]) for m in holders if m.get(metric) is not None and not math.isnan(float(m[metric]))
            ]
            if not values:
                continue
            if metric in SUMMED:
                merged[metric] = sum(values)
            elif across == "mean":
                merged[metric] = sum(values) / len(values)
            else:
                merged[metric] = max(values) if metric in LOWER_IS_BETTER else min(values)
        windows[window] = merged
    return windows
