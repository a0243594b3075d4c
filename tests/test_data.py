"""The data layer: bundled samples, CSV validation, splits, prepare/load_prepared, download fallback."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from autotrade.data.ohlcv import MAX_CSV_BYTES, normalize_ohlcv, read_ohlcv_csv
from autotrade.data.prepared import PreparedData, load_prepared, prepare_data
from autotrade.data.sources import BUNDLED, BundledSource, CsvSource, Source, bundled_key, load_bundled
from autotrade.data.splits import Splits, check_splits, default_splits
from autotrade.data.windows import Window
from autotrade.errors import ConfigError, DataError
from autotrade.fileio import atomic_write_json, atomic_write_text

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
GOOD_ROWS = [
    "2020-01-02,10.0,11.0,9.5,10.5,10.5,1000",
    "2020-01-03,10.5,11.5,10.0,11.0,11.0,1200",
    "2020-01-06,11.0,12.0,10.5,11.5,11.5,900",
    "2020-01-07,11.5,12.5,11.0,12.0,12.0,1100",
]


def write_csv(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def read_with_notes(path: Path) -> tuple[pd.DataFrame, list[str]]:
    notes: list[str] = []
    return read_ohlcv_csv(path, notify=notes.append), notes


def yfinance_frame(frame: pd.DataFrame, ticker: str = "SPY") -> pd.DataFrame:
    """What `yfinance.download(ticker, auto_adjust=False)` returns: (Price, Ticker) columns, index named Date."""
    recorded = frame[["Adj Close", "Close", "High", "Low", "Open", "Volume"]].copy()
    pairs = [(name, ticker) for name in recorded.columns]
    recorded.columns = pd.MultiIndex.from_tuples(pairs, names=["Price", "Ticker"])
    return recorded


def fake_yfinance(monkeypatch: pytest.MonkeyPatch, download) -> list[dict]:
    """Install a stand-in `yfinance` module whose `download` is `download`; returns the recorded calls."""
    calls: list[dict] = []

    def recording_download(ticker, **kwargs):
        calls.append({"ticker": ticker, **kwargs})
        return download(ticker, **kwargs)

    monkeypatch.setitem(sys.modules, "yfinance", SimpleNamespace(download=recording_download))
    return calls


# --- bundled samples -------------------------------------------------------------------------------------

EXPECTED_BUNDLED = {
    "sp500": (5031, "1999-01-04", "2018-12-31", True),
    "nasdaq": (5031, "1999-01-04", "2018-12-31", True),
    "goog": (2148, "2004-08-19", "2013-03-01", False),
    "eurusd": (5000, "2017-04-19 09:00:00", "2018-02-07 15:00:00", False),
    "btcusd": (156, "2012-01-31", "2024-12-31", False),
}


@pytest.mark.parametrize("key", sorted(EXPECTED_BUNDLED))
def test_each_bundled_dataset_loads_as_a_sorted_float_ohlcv_frame(key: str) -> None:
    rows, first, last, has_adj_close = EXPECTED_BUNDLED[key]
    frame = load_bundled(key)
    expected_columns = ["Open", "High", "Low", "Close", *(["Adj Close"] if has_adj_close else []), "Volume"]
    assert list(frame.columns) == expected_columns
    assert len(frame) == rows
    assert frame.index.name == "Date" and frame.index.tz is None
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert (frame.index[0], frame.index[-1]) == (pd.Timestamp(first), pd.Timestamp(last))
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert (frame[["Open", "High", "Low", "Close"]] > 0).all().all()


def test_bundled_sp500_is_5031_bars_from_1999_01_04_to_2018_12_31(sp500: pd.DataFrame) -> None:
    assert len(sp500) == 5031
    assert sp500.index[0] == pd.Timestamp("1999-01-04")
    assert sp500.index[-1] == pd.Timestamp("2018-12-31")


def test_bundled_sp500_keeps_the_source_values_unrounded(sp500: pd.DataFrame) -> None:
    # First and last rows of arch's sp500.csv.gz, as shipped.
    assert sp500.iloc[0].tolist() == [1229.22998, 1248.810059, 1219.099976, 1228.099976, 1228.099976, 877000000.0]
    assert sp500.iloc[-1]["Close"] == 2506.850098


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("SPY", "sp500"),
        ("^gspc", "sp500"),
        ("^IXIC", "nasdaq"),
        ("BTC-USD", "btcusd"),
        ("EURUSD=X", "eurusd"),
        ("Goog", "goog"),
    ],
)
def test_tickers_and_aliases_select_a_bundled_dataset(name: str, key: str) -> None:
    assert bundled_key(name) == key


def test_unknown_bundled_name_lists_the_choices() -> None:
    choices = "sp500, nasdaq, goog, eurusd, btcusd"
    with pytest.raises(DataError, match=f"no bundled data for 'AAPL': choose one of {choices}"):
        bundled_key("AAPL")


def test_every_source_loads_through_one_protocol_and_only_a_sample_brings_splits(
    tmp_path: Path, sp500: pd.DataFrame
) -> None:
    sp500.iloc[:300].to_csv(tmp_path / "Train.csv.gz")
    sources: list[Source] = [BundledSource("SPY"), CsvSource(tmp_path / "Train.csv.gz")]
    bundled, csv = (source.load() for source in sources)
    assert (bundled.kind, bundled.name, bundled.ticker, bundled.splits) == (
        "bundled",
        "sp500",
        "^GSPC",
        BUNDLED["sp500"].splits,
    )
    assert (csv.kind, csv.name, csv.ticker, csv.splits) == (
        "csv",
        "train-full",
        None,
        None,
    )  # never a split file's name
    pd.testing.assert_frame_equal(csv.frame, sp500.iloc[:300])


@pytest.mark.parametrize("key", sorted(BUNDLED))
def test_registered_bundled_splits_follow_the_default_rule_and_fit(key: str) -> None:
    frame = load_bundled(key)
    assert default_splits(frame) == BUNDLED[key].splits
    check_splits(frame, BUNDLED[key].splits, key)


# --- CSV validation --------------------------------------------------------------------------------------


def test_missing_column_error_names_file_and_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["2020-01-02,10,11,9,10,1000"], header="Date,Open,High,Low,Price,Volume\n")
    found = r"\(found: Date, Open, High, Low, Price, Volume\)"
    with pytest.raises(DataError, match=rf"prices\.csv: missing column\(s\) Close {found}"):
        read_ohlcv_csv(path)


def test_unparseable_date_error_names_column_and_line(tmp_path: Path) -> None:
    rows = GOOD_ROWS[:2] + ["2020-13-45,11.0,12.0,10.5,11.5,11.5,900"] + GOOD_ROWS[3:]
    with pytest.raises(DataError, match=r"prices\.csv: column Date: line 4: unparseable date '2020-13-45'"):
        read_ohlcv_csv(write_csv(tmp_path, rows))


def test_non_numeric_price_error_names_column_and_line(tmp_path: Path) -> None:
    rows = GOOD_ROWS[:1] + ["2020-01-03,10.5,11.5,ten,11.0,11.0,1200"] + GOOD_ROWS[2:]
    with pytest.raises(DataError, match=r"prices\.csv: column Low: line 3: not a number: 'ten'"):
        read_ohlcv_csv(write_csv(tmp_path, rows))


def test_non_positive_price_error_names_column_and_first_bad_line(tmp_path: Path) -> None:
    rows = GOOD_ROWS[:2] + ["2020-01-06,11.0,12.0,10.5,0,11.5,900", "2020-01-07,-1,12.5,11.0,12.0,12.0,1100"]
    with pytest.raises(DataError, match=r"prices\.csv: column Close: line 4: price must be positive, got 0\.0"):
        read_ohlcv_csv(write_csv(tmp_path, rows))


def test_negative_volume_error_names_column_and_line(tmp_path: Path) -> None:
    rows = GOOD_ROWS[:3] + ["2020-01-07,11.5,12.5,11.0,12.0,12.0,-5"]
    with pytest.raises(DataError, match=r"prices\.csv: column Volume: line 5: volume must not be negative, got -5\.0"):
        read_ohlcv_csv(write_csv(tmp_path, rows))


def test_empty_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        read_ohlcv_csv(path)


def test_missing_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_ohlcv_csv(tmp_path / "nope.csv")


def test_lowercase_spaced_headers_are_accepted_and_extra_columns_dropped(tmp_path: Path) -> None:
    header = " date ,OPEN,high,Low, close ,adj_close,VOLUME,Dividends\n"
    frame, notes = read_with_notes(write_csv(tmp_path, [row + ",0" for row in GOOD_ROWS], header=header))
    assert list(frame.columns) == ["Open", "High", "Low", "Close", "Adj Close", "Volume"]
    assert notes == [f"{tmp_path / 'prices.csv'}: ignored column(s) Dividends"]


def test_us_style_dates_are_parsed_month_first(tmp_path: Path) -> None:
    rows = ["1/4/1999,1,2,0.5,1.5,1.5,10", "1/5/1999,1,2,0.5,1.5,1.5,10", "12/31/1999,1,2,0.5,1.5,1.5,10"]
    frame = read_ohlcv_csv(write_csv(tmp_path, rows))
    assert list(frame.index) == [pd.Timestamp("1999-01-04"), pd.Timestamp("1999-01-05"), pd.Timestamp("1999-12-31")]


def test_unsorted_rows_are_sorted_and_reported(tmp_path: Path) -> None:
    rows = [GOOD_ROWS[0], GOOD_ROWS[2], GOOD_ROWS[1], GOOD_ROWS[3]]
    frame, notes = read_with_notes(write_csv(tmp_path, rows))
    assert frame.index.is_monotonic_increasing
    assert frame["Close"].tolist() == [10.5, 11.0, 11.5, 12.0]
    path = tmp_path / "prices.csv"
    assert notes == [f"{path}: rows were not in date order; sorted them (first out of order at line 4)"]


def test_duplicate_dates_are_dropped_keeping_the_first_and_reported(tmp_path: Path) -> None:
    rows = GOOD_ROWS[:2] + ["2020-01-03,99.0,99.0,99.0,99.0,99.0,1"] + GOOD_ROWS[2:]
    frame, notes = read_with_notes(write_csv(tmp_path, rows))
    assert len(frame) == 4 and frame.loc["2020-01-03", "Close"] == 11.0
    assert notes == [
        f"{tmp_path / 'prices.csv'}: dropped 1 row(s) repeating an earlier date, kept the first "
        "(first repeat: 2020-01-03 at line 4)"
    ]


def test_rows_with_missing_values_are_dropped_and_counted(tmp_path: Path) -> None:
    gaps = ["2020-01-03,10.5,,10.0,11.0,11.0,1200", "", "2020-01-06,NaN,12.0,10.5,11.5,11.5,900"]
    rows = GOOD_ROWS[:1] + gaps + GOOD_ROWS[3:]
    frame, notes = read_with_notes(write_csv(tmp_path, rows))
    assert list(frame.index) == [pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-07")]
    assert notes == [f"{tmp_path / 'prices.csv'}: dropped 3 row(s) with missing values (first at line 3)"]


def test_yfinance_multiindex_frame_is_normalised(sp500: pd.DataFrame) -> None:
    frame = normalize_ohlcv(yfinance_frame(sp500.iloc[:50]), "yfinance SPY")
    pd.testing.assert_frame_equal(frame, sp500.iloc[:50])


def test_frame_with_several_tickers_is_rejected(sp500: pd.DataFrame) -> None:
    both = pd.concat([yfinance_frame(sp500.iloc[:5], "SPY"), yfinance_frame(sp500.iloc[:5], "QQQ")], axis=1)
    with pytest.raises(DataError, match=r"yfinance: columns hold several tickers \(QQQ, SPY\); give one"):
        normalize_ohlcv(both, "yfinance")


# --- splits ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(prepared_dir: Path) -> PreparedData:
    return load_prepared(prepared_dir)


def test_default_sp500_splits_are_2013_and_2016(prepared: PreparedData) -> None:
    assert prepared.splits == Splits(pd.Timestamp("2013-01-01"), pd.Timestamp("2016-01-01"))
    assert prepared.window("train").index[-1] == pd.Timestamp("2012-12-31")
    assert prepared.window("test").index[0] == pd.Timestamp("2016-01-04")


def test_windows_partition_the_frame_without_gap_or_overlap(prepared: PreparedData) -> None:
    train, val, test = (prepared.window(name) for name in ("train", "val", "test"))
    assert train.index[-1] < prepared.splits.val_start <= val.index[0]
    assert val.index[-1] < prepared.splits.test_start <= test.index[0]
    pd.testing.assert_frame_equal(pd.concat([train, val, test]), prepared.window("full"))


def test_research_frame_holds_train_and_val_and_no_test_row(prepared: PreparedData) -> None:
    research = prepared.research_frame()
    pd.testing.assert_frame_equal(research, pd.concat([prepared.window("train"), prepared.window("val")]))
    assert research.index.max() < prepared.splits.test_start
    assert research.index.intersection(prepared.window("test").index).empty


def test_window_names_are_the_strings_files_and_records_already_use() -> None:
    assert [window.value for window in Window] == ["train", "val", "test", "full"]
    assert Window.named("val") is Window.VAL and f"{Window.TEST}.csv" == "test.csv"


def test_unknown_window_name_is_a_config_error(prepared: PreparedData) -> None:
    with pytest.raises(ConfigError, match="unknown window 'holdout'"):
        prepared.window("holdout")


def test_validation_start_after_test_start_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="validation start 2016-01-01 must be before test start 2013-01-01"):
        prepare_data(offline=True, val_start="2016-01-01", test_start="2013-01-01", data_dir=tmp_path)


def test_too_few_train_rows_for_the_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="too few rows for the split: train has 0 bar"):
        prepare_data(offline=True, val_start="1990-01-01", test_start="2016-01-01", data_dir=tmp_path)
    assert not (tmp_path / "meta.json").exists()


def test_split_flag_that_is_not_a_date_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--val-start: not a date: 'soon'"):
        prepare_data(offline=True, val_start="soon", data_dir=tmp_path)


def test_short_history_splits_on_bar_dates(sp500: pd.DataFrame) -> None:
    frame = sp500.iloc[:400]  # about 1.6 years: too short to snap to year starts
    splits = default_splits(frame)
    assert splits == Splits(frame.index[272], frame.index[340])  # last 60 bars test, 20% of the 340 before val


def test_only_test_start_given_puts_validation_before_it(tmp_path: Path) -> None:
    prepared = prepare_data(offline=True, test_start="2010-01-01", data_dir=tmp_path)
    assert prepared.splits == Splits(pd.Timestamp("2008-01-01"), pd.Timestamp("2010-01-01"))


def test_offline_sample_is_used_whole_whatever_the_download_start(tmp_path: Path) -> None:
    prepared = prepare_data(offline=True, start="2010-01-01", data_dir=tmp_path)
    assert len(prepared.frame) == 5031 and prepared.frame.index[0] == pd.Timestamp("1999-01-04")


# --- prepare and load_prepared ---------------------------------------------------------------------------


def test_prepare_writes_every_file_and_meta_sha_matches_the_full_csv(prepared_dir: Path) -> None:
    files = sorted(path.name for path in prepared_dir.iterdir())
    assert files == ["meta.json", "sp500.csv", "test.csv", "train.csv", "val.csv"]
    meta = json.loads((prepared_dir / "meta.json").read_text())
    assert meta["sha256"] == hashlib.sha256((prepared_dir / "sp500.csv").read_bytes()).hexdigest()
    assert {key: meta[key] for key in ("source", "ticker", "dataset", "rows", "first_date", "last_date")} == {
        "source": "bundled",
        "ticker": "^GSPC",
        "dataset": "sp500",
        "rows": 5031,
        "first_date": "1999-01-04",
        "last_date": "2018-12-31",
    }
    assert meta["splits"] == {"val_start": "2013-01-01", "test_start": "2016-01-01"}
    assert {name: part["rows"] for name, part in meta["windows"].items()} == {"train": 3521, "val": 756, "test": 754}


def test_split_csvs_hold_exactly_their_window_rows(prepared_dir: Path, prepared: PreparedData) -> None:
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(read_ohlcv_csv(prepared_dir / f"{name}.csv"), prepared.window(name))


def test_prepared_csv_round_trips_the_bundled_values_exactly(prepared: PreparedData, sp500: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(prepared.frame, sp500, check_exact=True)


def test_prepare_rerun_with_same_inputs_rewrites_nothing(tmp_path: Path) -> None:
    first = prepare_data(offline=True, data_dir=tmp_path)
    stamps = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    second = prepare_data(offline=True, data_dir=tmp_path)
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == stamps
    assert second.meta == first.meta


def test_prepare_from_csv_names_the_full_file_after_the_csv(tmp_path: Path, sp500: pd.DataFrame) -> None:
    source = tmp_path / "My Prices.csv"
    sp500.iloc[:1000].to_csv(source)
    prepared = prepare_data(csv=source, data_dir=tmp_path / "data")
    assert prepared.meta["source"] == "csv" and prepared.meta["file"] == "my-prices.csv"
    assert (tmp_path / "data" / "my-prices.csv").is_file()
    pd.testing.assert_frame_equal(prepared.frame, sp500.iloc[:1000])


def test_csv_named_like_a_split_file_does_not_overwrite_it(tmp_path: Path, sp500: pd.DataFrame) -> None:
    source = tmp_path / "train.csv"
    sp500.iloc[:1000].to_csv(source)
    assert prepare_data(csv=source, data_dir=tmp_path / "data").meta["file"] == "train-full.csv"


def test_load_prepared_without_data_says_run_prepare_first(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"no prepared data in {tmp_path}: run `autotrade prepare` first"):
        load_prepared(tmp_path)


def test_load_prepared_refuses_a_csv_changed_since_prepare(tmp_path: Path) -> None:
    prepare_data(offline=True, data_dir=tmp_path)
    full = tmp_path / "sp500.csv"
    full.write_text(full.read_text().replace("1229.22998", "1329.22998", 1))
    with pytest.raises(DataError, match=r"sp500\.csv changed since `autotrade prepare`.*rerun `autotrade prepare`"):
        load_prepared(tmp_path)


@pytest.mark.parametrize("key", sorted(BUNDLED))
def test_load_prepared_gives_exactly_what_the_validating_parser_gives(tmp_path: Path, key: str) -> None:
    prepare_data(offline=True, ticker=key, data_dir=tmp_path)
    loaded = load_prepared(tmp_path).frame
    validated = read_ohlcv_csv(tmp_path / json.loads((tmp_path / "meta.json").read_text())["file"])
    pd.testing.assert_frame_equal(loaded, validated, check_exact=True)
    assert list(loaded.columns) == list(validated.columns) and loaded.index.dtype == validated.index.dtype


def _reprepare_with(tmp_path: Path, text: str) -> None:
    """Replace the prepared full CSV with `text` and record its sha256, as a hand edit plus a meta fix would."""
    (tmp_path / "sp500.csv").write_text(text)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    atomic_write_json(tmp_path / "meta.json", meta)


def test_load_prepared_repairs_a_non_canonical_csv_like_any_csv(tmp_path: Path) -> None:
    prepare_data(offline=True, data_dir=tmp_path)
    lines = (tmp_path / "sp500.csv").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]  # two rows out of date order
    _reprepare_with(tmp_path, "\n".join(lines) + "\n")
    frame = load_prepared(tmp_path).frame
    assert frame.index.is_monotonic_increasing and len(frame) == 5031


def test_load_prepared_names_the_line_of_a_bad_value_in_a_non_canonical_csv(tmp_path: Path) -> None:
    prepare_data(offline=True, data_dir=tmp_path)
    text = (tmp_path / "sp500.csv").read_text().replace("1229.22998", "-1229.22998", 1)
    _reprepare_with(tmp_path, text)
    with pytest.raises(DataError, match=r"sp500\.csv: column Open: line 2: price must be positive"):
        load_prepared(tmp_path)


# --- download and fallback -------------------------------------------------------------------------------


def test_successful_download_is_prepared_from_the_yfinance_frame(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sp500: pd.DataFrame
) -> None:
    recorded = yfinance_frame(sp500.loc["2009":])
    calls = fake_yfinance(monkeypatch, lambda ticker, **kwargs: recorded)
    notes: list[str] = []
    prepared = prepare_data(ticker="SPY", data_dir=tmp_path, notify=notes.append)
    assert calls[0]["ticker"] == "SPY" and calls[0]["start"] == "2000-01-01" and calls[0]["auto_adjust"] is False
    assert (prepared.meta["source"], prepared.meta["ticker"], prepared.meta["file"]) == ("yfinance", "SPY", "spy.csv")
    pd.testing.assert_frame_equal(prepared.frame, sp500.loc["2009":])
    # 10 years: test = last 1.5 years snapped to 2017-01-01, validation = ~20% of the 8 years before.
    assert prepared.splits == Splits(pd.Timestamp("2015-01-01"), pd.Timestamp("2017-01-01"))
    assert notes == [
        "default splits: validation from 2015-01-01, test from 2017-01-01 (--val-start/--test-start change them)"
    ]


def test_download_end_is_inclusive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sp500: pd.DataFrame) -> None:
    calls = fake_yfinance(monkeypatch, lambda ticker, **kwargs: yfinance_frame(sp500.loc["2009":"2018-06-29"]))
    prepare_data(ticker="SPY", start="2009-01-01", end="2018-06-29", data_dir=tmp_path)
    assert (calls[0]["start"], calls[0]["end"]) == ("2009-01-01", "2018-06-30")  # yfinance's end is exclusive


def test_offline_without_a_ticker_uses_the_sp500_sample(tmp_path: Path) -> None:
    assert prepare_data(offline=True, ticker=None, data_dir=tmp_path).meta["dataset"] == "sp500"


def test_failed_download_falls_back_to_bundled_sp500_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_yfinance(monkeypatch, lambda ticker, **kwargs: pd.DataFrame())
    notes: list[str] = []
    prepared = prepare_data(ticker="SPY", data_dir=tmp_path, notify=notes.append)
    assert notes[0] == (
        "could not download SPY: yfinance returned no data: no rows returned; "
        "using the bundled S&P 500 sample (1999-2018) instead"
    )
    assert (prepared.meta["source"], prepared.meta["dataset"], prepared.meta["rows"]) == ("bundled", "sp500", 5031)
    assert prepared.meta["fallback_reason"] == "yfinance returned no data: no rows returned"


def test_no_fallback_makes_a_failed_download_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def unreachable(ticker, **kwargs):
        raise ConnectionError("Could not resolve host: query2.finance.yahoo.com\nmore detail")

    fake_yfinance(monkeypatch, unreachable)
    reason = r"yfinance failed: Could not resolve host: query2\.finance\.yahoo\.com"
    with pytest.raises(DataError, match=rf"^could not download SPY: {reason}$"):
        prepare_data(ticker="SPY", no_fallback=True, data_dir=tmp_path)
    assert not any(tmp_path.iterdir())


# --- atomic writes ---------------------------------------------------------------------------------------


def test_atomic_write_json_writes_non_finite_floats_as_null(tmp_path: Path) -> None:
    record = {"sharpe": math.nan, "values": [1.5, np.float64(math.inf)], "n": np.int64(3)}
    atomic_write_json(tmp_path / "out.json", record)
    assert json.loads((tmp_path / "out.json").read_text()) == {"sharpe": None, "values": [1.5, None], "n": 3}


def test_atomic_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "notes.md", "old")
    atomic_write_text(tmp_path / "notes.md", "new")
    assert (tmp_path / "notes.md").read_text() == "new"
    assert [path.name for path in tmp_path.iterdir()] == ["notes.md"]


# --- dates outside what a timestamp can hold, and a data directory that cannot be written -----------------


def test_date_outside_the_supported_range_is_a_data_error_naming_the_line(tmp_path: Path) -> None:
    rows = GOOD_ROWS[:2] + ["1600-01-08,11.0,12.0,10.5,11.5,11.5,900"] + GOOD_ROWS[3:]
    with pytest.raises(DataError, match=r"prices\.csv: column Date: line 4: date out of range '1600-01-08'"):
        read_ohlcv_csv(write_csv(tmp_path, rows))


@pytest.mark.parametrize("flag", ["val_start", "test_start"])
def test_split_flag_outside_the_supported_range_is_a_config_error(tmp_path: Path, flag: str) -> None:
    name = "--" + flag.replace("_", "-")
    with pytest.raises(ConfigError, match=rf"{name}: date out of range: '3000-01-01'"):
        prepare_data(offline=True, data_dir=tmp_path, **{flag: "3000-01-01"})


def test_data_dir_that_is_a_file_is_a_data_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    with pytest.raises(DataError, match=r"cannot write the prepared data to .*data"):
        prepare_data(offline=True, data_dir=blocker)
    assert blocker.read_text() == "not a directory"


def test_load_prepared_with_an_unreadable_full_csv_is_a_data_error(tmp_path: Path) -> None:
    prepared = prepare_data(offline=True, data_dir=tmp_path)
    full = tmp_path / prepared.meta["file"]
    full.unlink()
    full.mkdir()  # e.g. a botched copy: the name is there, the bytes cannot be read
    with pytest.raises(DataError, match=r"cannot read .*sp500\.csv.*rerun `autotrade prepare`"):
        load_prepared(tmp_path)


def read_in_a_subprocess(path: Path) -> str:
    """What reading `path` says, from a child that is killed if it blocks (a FIFO without a writer would)."""
    probe = (
        "import sys\nfrom autotrade.data.ohlcv import read_ohlcv_csv\nfrom autotrade.errors import DataError\n"
        "try:\n    read_ohlcv_csv(sys.argv[1])\nexcept DataError as exc:\n    print(exc)\n"
    )
    return subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60).stdout


def test_a_fifo_is_refused_at_once_not_read_forever(tmp_path: Path) -> None:
    fifo = tmp_path / "prices.csv"
    os.mkfifo(fifo)
    assert (
        read_in_a_subprocess(fifo).strip() == f"{fifo}: not a regular file (a pipe, device or socket): give a CSV file"
    )


def test_a_device_is_refused_at_once_not_read_forever() -> None:
    assert "/dev/zero: not a regular file" in read_in_a_subprocess(Path("/dev/zero"))


def test_a_csv_larger_than_the_cap_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with open(path, "wb") as handle:
        handle.truncate(MAX_CSV_BYTES + 1)  # sparse: as large as it gets, nothing to parse
    with pytest.raises(DataError, match=r"huge\.csv: larger than the 64 MB a CSV may hold"):
        read_ohlcv_csv(path)


def test_a_gzip_that_expands_past_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(HEADER.encode() + b"0" * MAX_CSV_BYTES, compresslevel=1))
    with pytest.raises(DataError, match=r"bomb\.csv\.gz: larger than the 64 MB a CSV may hold \(decompressed\)"):
        read_ohlcv_csv(path)


def test_a_gzip_named_csv_is_read_like_any_csv(tmp_path: Path) -> None:
    plain = write_csv(tmp_path, GOOD_ROWS)
    zipped = tmp_path / "zipped.csv"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    pd.testing.assert_frame_equal(read_ohlcv_csv(zipped), read_ohlcv_csv(plain))


def test_dates_across_a_daylight_saving_change_keep_their_local_calendar_date(tmp_path: Path) -> None:
    rows = ["2020-03-06 00:00:00-05:00,10,11,9.5,10.5,10.5,1000", "2020-03-09 00:00:00-04:00,10.5,11.5,10,11,11,1200"]
    frame = read_ohlcv_csv(write_csv(tmp_path, rows))
    assert list(frame.index) == [pd.Timestamp("2020-03-06"), pd.Timestamp("2020-03-09")]


def test_a_high_below_the_low_is_refused_naming_its_line_and_date(tmp_path: Path) -> None:
    rows = GOOD_ROWS[:2] + ["2020-01-06,11.0,10.0,10.5,10.2,10.2,900"] + GOOD_ROWS[3:]
    with pytest.raises(DataError, match=r"prices\.csv: line 4 \(2020-01-06\): High 10\.0 is below Low 10\.5"):
        read_ohlcv_csv(write_csv(tmp_path, rows))
