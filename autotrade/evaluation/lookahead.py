"""The look-ahead gate: a causal block gives the same features on every prefix of the data.

A search loop selects for whatever flatters the score, so a leak the gate misses gets found and
crowned. The gate therefore places its cuts where a leak must act, not where luck puts them:
- right after every bar where the position changes (that prefix holds no later bar at all, so the
  decision is tested against every horizon at once), then after other changes of the raw signal
  (a hold that delays a trade by one bar), capped;
- right before the largest absolute returns, gaps, ranges and volume spikes of each window, where
  a profitable leak acts;
- the last bars of each window, and the train/validation boundary;
- one random cut in each of many equal strata of the research bars, drawn from the run's private
  seed combined with the block, the strata narrow enough (random_strata) that a leak changing a
  feature on 1% of the bars escapes them all with probability under 1% however its bars lie.
One worker child runs the block on the prefixes in ascending order, each prefix's new bars sent
only after the previous result, so no run ever holds a later bar (pool.SandboxPool.run_candidate); its
features are compared with the full run's by value, exactly: causal pandas code computes the
same floats on a prefix as on the whole. The same child makes one strategy_logic pass in date
order, each bar's signal computed on the first prefix that holds it (so no state, module objects
shared between namespaces included, can hold a later bar), and those signals are compared with the
full run's too: the cuts right after position changes put every trade decision to this test.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Protocol

import numpy as np
import pandas as pd

from autotrade.errors import CandidateError
from autotrade.sandbox.execute import bar_label

LEAK_DENSITY = 0.01  # the sparsest leak (share of the bars it changes) the random cuts must catch ...
MISS_RATE = 0.01  # ... with at most this probability of missing it
POSITION_CUTS = 200  # at most this many cuts after position and then raw signal changes (a sample when more)
EXTREME_CUTS = 8  # per measure (|return|, |gap|, range, volume spike) and window
LAST_BARS = 5  # cuts among the last bars of each window
MIN_ROWS = 30  # no cut shorter than this: indicators are all warm-up there


class GateStep(Protocol):
    """One prefix run as the harness received it (pool.GateStep has these)."""

    cut: int  # the prefix's length: bars [0, cut)
    start: int  # the first row whose features came back
    columns: tuple[str, ...]
    features: Mapping[str, np.ndarray]  # column -> float64[cut - start]
    signal_start: int  # the first bar whose signal came back
    signals: np.ndarray  # float64[cut - signal_start]


class FullRun(Protocol):
    """The full run (pool.CandidateOutput has these)."""

    columns: tuple[str, ...]
    features: Mapping[str, np.ndarray]
    signals: np.ndarray


def seed_for(source: str, secret: int | str = "") -> int:
    """The gate's seed for a block: the run's private secret combined with the block's text."""
    digest = hashlib.sha256(f"{secret}\x00{source}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little")


def signal_changes(signals: np.ndarray) -> np.ndarray:
    """Bars whose raw signal differs from the previous bar's (a hold that delays a trade is one too)."""
    return np.flatnonzero(np.diff(signals) != 0) + 1


def position_changes(signals: np.ndarray) -> np.ndarray:
    """Bars where the long/flat position changes: a buy (1) while flat or a sell (-1) while long."""
    changes, long = [], False
    for at, signal in enumerate(signals.tolist()):
        if (signal == 1.0 and not long) or (signal == -1.0 and long):
            long = not long
            changes.append(at)
    return np.asarray(changes, dtype=np.int64)


def _extreme_bars(frame: pd.DataFrame, low: int, high: int, count: int) -> list[int]:
    """Bars in [low, high) with the largest |close return|, |gap|, range and volume spike."""
    close = frame["Close"].to_numpy(dtype=float)
    previous = np.concatenate([[np.nan], close[:-1]])
    measures = [np.abs(close / previous - 1)]
    if "Open" in frame:
        measures.append(np.abs(frame["Open"].to_numpy(dtype=float) / previous - 1))
    if "High" in frame and "Low" in frame:
        measures.append((frame["High"].to_numpy(dtype=float) - frame["Low"].to_numpy(dtype=float)) / previous)
    if "Volume" in frame:
        volume = frame["Volume"].astype(float)
        measures.append((volume / volume.rolling(20, min_periods=5).median().shift(1)).to_numpy())
    bars: list[int] = []
    for values in measures:
        window = np.nan_to_num(values[low:high], nan=-np.inf)
        top = np.argsort(window, kind="stable")[::-1][:count]
        bars.extend(int(low + t) for t in top if np.isfinite(window[t]))
    return bars


def cut_points(
    frame: pd.DataFrame, signals: np.ndarray, val_start_pos: int, seed: int, min_rows: int = MIN_ROWS
) -> list[int]:
    """Prefix lengths (bars kept) for the gate, ascending, all in [min_rows, len(frame)).

    `signals` are the full run's; `val_start_pos` the first validation bar (0 or len(frame): none).
    """
    placed, drawn = cut_plan(frame, signals, val_start_pos, seed, min_rows)
    return sorted({*placed, *drawn})


def cut_plan(
    frame: pd.DataFrame, signals: np.ndarray, val_start_pos: int, seed: int, min_rows: int = MIN_ROWS
) -> tuple[list[int], list[int]]:
    """cut_points as (the cuts placed where leaks act, the stratified random ones in stratum order)."""
    n_rows = len(frame)
    low = max(1, min(min_rows, n_rows // 2))
    if n_rows < 2:
        return [], []
    rng = np.random.default_rng(seed)
    boundary = val_start_pos if 0 < val_start_pos < n_rows else 0
    windows = [(0, boundary), (boundary, n_rows)] if boundary else [(0, n_rows)]
    cuts = set(whole_cuts(n_rows, val_start_pos))
    # The prefix ends at the deciding bar: every position change, then every other change of the raw signal
    # (a leak that only delays a trade by a day changes no position on its own bar), within the cap.
    positions = position_changes(signals) + 1
    others = np.setdiff1d(signal_changes(signals) + 1, positions)
    total = len(positions) + len(others)
    if total > POSITION_CUTS:  # each kind keeps its share of the cap, so neither crowds the other out
        kept_others = round(POSITION_CUTS * len(others) / total)
        positions = rng.choice(positions, POSITION_CUTS - kept_others, replace=False)
        others = rng.choice(others, kept_others, replace=False)
    cuts.update(int(c) for c in (*positions, *others))
    for start, end in windows:
        cuts.update(range(max(start + 1, end - LAST_BARS + 1), end + 1))  # the window's last bars
        # The big move is the first bar the prefix lacks: every compared row before it is tested against it.
        cuts.update(_extreme_bars(frame, start, end, EXTREME_CUTS))
    edges = random_strata(n_rows, low)
    drawn = [int(rng.integers(left, right)) for left, right in pairwise(edges)]
    return sorted(c for c in cuts if low <= c < n_rows), drawn


def random_strata(n_rows: int, low: int) -> list[int]:
    """Edges of the strata over the cuttable prefix lengths [low, n_rows), one random cut drawn in each.

    A one-bar leak at bar t is seen only by the cut t + 1, so in a stratum of width w it is caught
    with probability 1/w, and a leak on k bars escapes most easily when they lie in different
    strata: (1 - 1/w) ** k. The widest stratum is held to the width at which that is MISS_RATE for
    k = LEAK_DENSITY of the bars.
    """
    span = n_rows - low
    if span <= 0:
        return []
    leak_bars = max(1, math.ceil(LEAK_DENSITY * n_rows))
    width = max(1, math.floor(1 / (1 - MISS_RATE ** (1 / leak_bars))))
    count = math.ceil(span / width)
    return [low + (span * i) // count for i in range(count + 1)]


def split_for_budget(
    placed: list[int], drawn: list[int], seconds_per_row: float, workers: int, budget_s: float
) -> tuple[list[int], list[int]]:
    """(cuts to check now, cuts to check only if the candidate would enter the population).

    A loop-heavy block whose whole gate would take more than `budget_s` gets what fits of the placed
    cuts and an evenly spread share of the random strata now; the rest are deferred, not dropped.
    """
    # Measured: a prefix costs about twice its share of the full run's generate_features, plus ~1 ms of its own.
    everything = sorted({*placed, *drawn})
    cost = (2 * seconds_per_row * sum(everything) + 1e-3 * len(everything)) / max(1, workers)
    if cost <= budget_s:
        return everything, []
    keep = max(1, int(len(everything) * budget_s / cost))
    # The placed cuts first (where leaks act), then an even spread of the strata; of the placed ones alone an
    # even spread when even they do not fit.
    if keep >= len(placed):
        now = {*placed, *_spread(drawn, keep - len(placed))}
    else:
        now = set(_spread(placed, keep))
    return sorted(now), sorted(set(everything) - now)


def _spread(cuts: list[int], count: int) -> list[int]:
    """`count` of `cuts` spread evenly over the list."""
    if count <= 0 or not cuts:
        return []
    step = len(cuts) / min(count, len(cuts))
    return [cuts[int(i * step)] for i in range(min(count, len(cuts)))]


def whole_cuts(n_rows: int, val_start_pos: int) -> list[int]:
    """The fixed cuts, at which every row is compared (not only the tail): mid-train, the boundary, mid-validation.

    The boundary's prefix is exactly the training window. Without a boundary: the quarters.
    """
    if 0 < val_start_pos < n_rows:
        return sorted({val_start_pos // 2, val_start_pos, (val_start_pos + n_rows) // 2})
    return sorted({n_rows // 4, n_rows // 2, 3 * n_rows // 4})


def values_equal(whole: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Elementwise equality with NaN equal to NaN: exact, because causal code computes the same floats."""
    return (whole == part) | (np.isnan(whole) & np.isnan(part))


def check_lookahead(full: FullRun, index: pd.DatetimeIndex, steps: Sequence[GateStep]) -> None:
    """Raise CandidateError(status="lookahead") at the earliest bar where a prefix run disagrees with the full run.

    A column only one side has passes when it is constant where both sides have rows (a category,
    such as a month in get_dummies, that a short prefix has not seen yet).
    """
    worst: tuple[int, str, float, float] | None = None  # (row, column or "" for the signal, full value, prefix value)
    for step in steps:
        cut, start = step.cut, step.start
        same = values_equal(full.signals[step.signal_start : cut], step.signals)
        if not same.all():
            row = step.signal_start + int(np.argmin(same))
            if worst is None or row < worst[0]:  # at the same bar a column, the cause, is named rather than the signal
                worst = (row, "", float(full.signals[row]), float(step.signals[row - step.signal_start]))
        full_names, prefix_names = set(full.columns), set(step.columns)
        for name in full_names ^ prefix_names:
            values = full.features[name][:cut] if name in full_names else step.features[name]
            if not _constant(values):
                raise _column_differs(name, name in full_names, index[cut - 1])
        for name in full.columns:
            if name not in prefix_names:
                continue
            whole, part = full.features[name][start:cut], step.features[name]
            same = values_equal(whole, part)
            if not same.all():
                row = start + int(np.argmin(same))
                if worst is None or row < worst[0] or (row == worst[0] and not worst[1]):
                    worst = (row, name, float(whole[row - start]), float(part[row - start]))
    if worst is None:
        return
    row, name, whole_value, part_value = worst
    what = f"column '{name}'" if name else "the signal"
    raise CandidateError(
        f"look-ahead: {what} at {bar_label(index[row])} changes when later bars are removed "
        f"(it uses future data): {whole_value:.6g} with all bars, {part_value:.6g} without the later ones",
        status="lookahead",
        error_type=None,
    )


def _constant(values: np.ndarray) -> bool:
    finite = values[~np.isnan(values)]
    return len(finite) in (0, len(values)) and (len(finite) == 0 or bool((finite == finite[0]).all()))


def _column_differs(name: str, full_only: bool, last: pd.Timestamp) -> CandidateError:
    side = "only with all bars" if full_only else "only without the later bars"
    return CandidateError(
        f"look-ahead: generate_features returns column '{name}' {side} (bars after "
        f"{bar_label(last)} removed), and its values vary",
        status="lookahead",
    )
