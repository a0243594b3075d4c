"""Split dates: which bars are train, validation and test, the default rule that picks them, each window's rows.

Train is before `val_start`, validation is [`val_start`, `test_start`), test from `test_start`; `full`
is every bar (the names: `windows.Window`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from autotrade.data.windows import SPLIT_WINDOWS, Window
from autotrade.errors import DataError
from autotrade.fmt import iso_moment

# train: the baseline's 50-bar SMA needs warm-up before it can trade; val/test: fewer bars make a Sharpe noise.
MIN_ROWS = {Window.TRAIN: 60, Window.VAL: 20, Window.TEST: 20}
_TEST_SHARE = 0.15  # default test window: the last ~15% of the history
_VAL_SHARE = 0.20  # default validation window: the ~20% of what is left before the test window
_MIN_YEARS_FOR_YEAR_STARTS = 5.0  # shorter histories split on bar dates: snapping would distort the shares


@dataclass(frozen=True)
class Splits:
    """Split dates: train is before `val_start`, validation is [`val_start`, `test_start`), test from `test_start`."""

    val_start: pd.Timestamp
    test_start: pd.Timestamp

    def to_dict(self) -> dict[str, str]:
        """The split dates as ISO strings (dates, or datetimes for intraday data)."""
        return {"val_start": iso_moment(self.val_start), "test_start": iso_moment(self.test_start)}


def default_splits(frame: pd.DataFrame, *, test_start: pd.Timestamp | None = None) -> Splits:
    """Default split dates: the last ~15% of the history test, the ~20% before it validation.

    Histories of 5 years or more split on the nearest year starts; shorter ones on bar dates. With
    `test_start` given, only the validation start is chosen (the ~20% before it).
    """
    index = frame.index
    if len(index) < 3:
        needed = sum(MIN_ROWS.values())
        raise DataError(f"too few rows to split: {len(index)} (train, validation and test need {needed})")
    first, last = index[0], index[-1]
    if (last - first) >= pd.Timedelta(days=365.25 * _MIN_YEARS_FOR_YEAR_STARTS):
        test = test_start if test_start is not None else _nearest_year_start(last - _TEST_SHARE * (last - first))
        splits = Splits(_nearest_year_start(test - _VAL_SHARE * (test - first)), test)
        if _split_problem(index, splits) is None:
            return splits
    # Bar dates: exact shares whatever the bar size (hourly, monthly) or length of the history.
    count = len(index)
    cut = count - round(_TEST_SHARE * count) if test_start is None else int(index.searchsorted(test_start))
    cut = min(max(cut, 2), count - 1)
    val = min(max(cut - round(_VAL_SHARE * cut), 1), cut - 1)
    return Splits(index[val], test_start if test_start is not None else index[cut])


def check_splits(frame: pd.DataFrame, splits: Splits, source: str) -> None:
    """DataError unless val_start < test_start and train, val and test each hold enough rows (MIN_ROWS)."""
    problem = _split_problem(frame.index, splits)
    if problem is not None:
        raise DataError(f"{source}: {problem}")


def _split_problem(index: pd.DatetimeIndex, splits: Splits) -> str | None:
    """Why `splits` cannot be used on `index`, or None."""
    if splits.val_start >= splits.test_start:
        return (
            f"validation start {iso_moment(splits.val_start)} must be before test start {iso_moment(splits.test_start)}"
        )
    slices = window_slices(index, splits)
    for name in SPLIT_WINDOWS:
        rows = slices[name].stop - slices[name].start
        if rows < MIN_ROWS[name]:
            span = f"{iso_moment(index[0])}..{iso_moment(index[-1])}" if len(index) else "no rows"
            val, test = iso_moment(splits.val_start), iso_moment(splits.test_start)
            return (
                f"too few rows for the split: {name} has {rows} bar(s), needs at least {MIN_ROWS[name]} "
                f"(data {span}, validation from {val}, test from {test}); "
                "choose other --val-start/--test-start"
            )
    return None


def window_slices(index: pd.DatetimeIndex, splits: Splits) -> dict[Window, slice]:
    """Row slices of every window within a sorted `index`: train < val_start <= val < test_start <= test."""
    val = int(index.searchsorted(splits.val_start))
    test = int(index.searchsorted(splits.test_start))
    end = len(index)
    return {
        Window.TRAIN: slice(0, val),
        Window.VAL: slice(val, test),
        Window.TEST: slice(test, end),
        Window.FULL: slice(0, end),
    }


def _nearest_year_start(moment: pd.Timestamp) -> pd.Timestamp:
    """The 1 January nearest to `moment`."""
    this_year, next_year = pd.Timestamp(moment.year, 1, 1), pd.Timestamp(moment.year + 1, 1, 1)
    return this_year if moment - this_year <= next_year - moment else next_year
