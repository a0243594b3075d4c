"""The look-ahead gate: a causal block gives the same features and signals on a prefix of the data.

The harness reruns the candidate on truncated frames (`frame.iloc[:cut]`, each in its own
fresh worker, see worker.run_candidate) and compares every feature column and the signal on
the rows both runs share. Anything that reads later bars (negative shifts, centred windows,
bfill, interpolation, whole-sample statistics, `iloc[-1]`, state smuggled through module
globals) changes some shared row when those bars are removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from ..errors import CandidateError
from .execute import bar_label

RTOL = 1e-9  # relative tolerance: float noise, not information
ATOL = 1e-12


class _Run(Protocol):
    """What a run carries (worker.RunResult and worker.CandidateOutput both do)."""

    rows: int
    columns: tuple[str, ...]
    features: Mapping[str, np.ndarray]
    signals: np.ndarray


class _FullRun(_Run, Protocol):
    prefixes: tuple[_Run, ...]


def seed_for(source: str) -> int:
    """A seed derived from the block's text: the same candidate always gets the same random cuts."""
    return int.from_bytes(hashlib.sha256(source.encode("utf-8")).digest()[:8], "little")


def cut_points(n_rows: int, val_start_pos: int, seed: int, n_random: int = 2, min_rows: int = 30) -> list[int]:
    """Prefix lengths (bars kept) for the look-ahead check, ascending.

    One inside the training window (half way), one at the train/validation boundary (the
    prefix is exactly the training window), one half way through the rest, and `n_random`
    uniform ones in [min_rows, n_rows), drawn from `seed`. Without a usable boundary the
    fixed cuts fall at 1/4, 1/2 and 3/4 of the frame.
    """
    if n_rows < 2:
        return []
    low = max(1, min(min_rows, n_rows // 2))
    if 0 < val_start_pos < n_rows:
        fixed = [val_start_pos // 2, val_start_pos, (val_start_pos + n_rows) // 2]
    else:
        fixed = [n_rows // 4, n_rows // 2, 3 * n_rows // 4]
    drawn = np.random.default_rng(seed).integers(low, n_rows, size=max(0, n_random)).tolist()
    return sorted({int(c) for c in [*fixed, *drawn] if low <= c < n_rows})


def check_lookahead(full: _FullRun, index: pd.DatetimeIndex, prefixes: Sequence[_Run] | None = None,
                    rtol: float = RTOL, atol: float = ATOL) -> None:
    """Raise CandidateError(status="lookahead") at the earliest bar where a prefix run disagrees with the full run.

    `full` is worker.run_candidate's output; its own `prefixes` are compared unless others are
    given. Each run carries `rows`, `columns`, `features` (column -> float64 array) and
    `signals`; `index` holds the full run's dates. NaN equals NaN; numbers must agree within
    rtol/atol.
    """
    if prefixes is None:
        prefixes = full.prefixes
    worst: tuple[int, int, str, float, float, int] | None = None  # (row, order, name, full, prefix, rows)
    for prefix in prefixes:
        rows = prefix.rows
        full_columns, prefix_columns = list(full.columns), list(prefix.columns)
        if full_columns != prefix_columns:
            raise _columns_differ(full_columns, prefix_columns, index[rows - 1], rows)
        named = [(c, full.features[c], prefix.features[c]) for c in full_columns]
        named.append(("signal", full.signals, prefix.signals))
        for order, (name, whole, part) in enumerate(named):
            whole = whole[:rows]
            same = np.isclose(whole, part, rtol=rtol, atol=atol, equal_nan=True)
            if not same.all():
                row = int(np.argmin(same))
                if worst is None or (row, order) < worst[:2]:
                    worst = (row, order, name, float(whole[row]), float(part[row]), rows)
    if worst is None:
        return
    row, order, name, whole_value, part_value, rows = worst
    what = "the signal" if order == len(full.columns) else f"column '{name}'"
    raise CandidateError(
        f"look-ahead: {what} at {bar_label(index[row])} changes when later bars are removed "
        f"(uses future data): {whole_value:.6g} with all bars, {part_value:.6g} with bars up to "
        f"{bar_label(index[rows - 1])} only", status="lookahead", error_type=None)


def _columns_differ(full: list[str], prefix: list[str], last: pd.Timestamp, rows: int) -> CandidateError:
    only_full = [c for c in full if c not in prefix]
    only_prefix = [c for c in prefix if c not in full]
    if only_full or only_prefix:
        detail = (f"column '{only_full[0]}' exists only with all bars" if only_full
                  else f"column '{only_prefix[0]}' exists only without the later bars")
    else:
        detail = "the column order differs"
    return CandidateError(f"look-ahead: generate_features returns different columns when bars after "
                          f"{bar_label(last)} are removed ({detail}; first {rows} bars)", status="lookahead")
