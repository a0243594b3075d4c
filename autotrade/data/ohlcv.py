"""The canonical OHLCV frame, and reading and validating any CSV or frame into it.

An OHLCV frame is a DataFrame with a tz-naive DatetimeIndex named `Date` (sorted, unique, ns) and float64
columns `Open, High, Low, Close, [Adj Close], Volume` in that order. Every source goes through
`normalize_ohlcv`, so a bad file fails the same way wherever it came from.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import stat
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autotrade.contract import OHLCV_COLUMNS
from autotrade.errors import DataError
from autotrade.fmt import first_line, iso_moment

Notify = Callable[[str], None]

COLUMN_ORDER = ("Open", "High", "Low", "Close", "Adj Close", "Volume")
REQUIRED_COLUMNS = OHLCV_COLUMNS  # what a trade.py may rely on: the contract's columns
PRICE_COLUMNS = ("Open", "High", "Low", "Close", "Adj Close")
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


def ignore(message: str) -> None:
    """The default `notify`: drop the message."""


def read_ohlcv_csv(path: Path | str, *, notify: Notify = ignore) -> pd.DataFrame:
    """Read, validate and normalise an OHLCV CSV (plain, gzip, bz2 or xz); DataError names file, column and line."""
    path = Path(path)
    return parse_ohlcv_csv(_csv_bytes(path), str(path), notify=notify)


def _csv_bytes(path: Path) -> bytes:
    """A CSV file's bytes, decompressed; DataError unless a regular file of at most MAX_CSV_BYTES (decompressed)."""

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
            raise DataError(f"{path}: cannot read: {first_line(str(exc))}") from None
    if len(payload) > MAX_CSV_BYTES:
        raise too_large(" (decompressed)")
    return payload


def parse_ohlcv_csv(payload: bytes, source: str, *, notify: Notify = ignore) -> pd.DataFrame:
    """Validate and normalise CSV bytes; every cell is parsed as a string first, so that bad cells can be named."""
    try:
        # skip_blank_lines=False keeps frame row i on CSV line i + 2, so errors can name the line.
        raw = pd.read_csv(io.BytesIO(payload), dtype=str, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{source}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{source}: not a well-formed CSV: {first_line(str(exc))}") from None
    except UnicodeDecodeError:
        raise DataError(f"{source}: not a UTF-8 text CSV") from None
    return normalize_ohlcv(raw, source, notify=notify, csv_lines=True)


def normalize_ohlcv(
    df: pd.DataFrame, source_name: str, *, notify: Notify = ignore, csv_lines: bool = False
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
            f"(first repeat: {iso_moment(frame.index[first])} at {where(positions[first])})"
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
                    raise DataError(f"{source}: column Date: unparseable dates: {first_line(str(exc))}") from None
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
                    f"{source}: {where(row)} ({iso_moment(frame.index[row])}): High {float(high[row])!r} is below Low "
                    f"{float(low[row])!r}: fix or remove that row",
                )
            )
    if problems:
        raise DataError(min(problems)[2])


def parse_canonical_csv(payload: bytes) -> pd.DataFrame | None:
    """The canonical CSV `prepare` writes, parsed with typed columns (~5x faster); None when it is not canonical.

    Canonical: header `Date` then known columns in COLUMN_ORDER, ISO dates strictly increasing, every value
    a finite float, prices positive and volumes non-negative. Anything else returns None, so that the
    validating parser (`parse_ohlcv_csv`) reports (or repairs) it exactly as for any other CSV. The result
    equals that parser's.
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
