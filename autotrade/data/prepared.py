"""`prepare`: get, validate and split the data once into `data/`; `load_prepared`: what every later stage reads.

`prepare_data` picks a source (`sources`), chooses the split dates (`splits`) and writes `<name>.csv`,
`train.csv`, `val.csv`, `test.csv` and then `meta.json`, the commit point `load_prepared` trusts.
Several tickers (`--ticker sp500,nasdaq`) make one prepared set: each asset is a complete prepared folder
`assets/<name>/` sharing the split dates, and the set's `meta.json` lists them (one of them may be held out
of research entirely). `Anonymization` is the view of prepared data that `run --anonymize` shows the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autotrade.data.ohlcv import Notify, ignore, parse_canonical_csv, parse_ohlcv_csv
from autotrade.data.sources import DEFAULT_START, BundledSource, CsvSource, Source, SourceFrame, YahooSource
from autotrade.data.splits import Splits, check_splits, default_splits, window_slices
from autotrade.data.windows import SPLIT_WINDOWS, Window
from autotrade.errors import ConfigError, DataError, StorageError
from autotrade.fileio import atomic_write_bytes, atomic_write_json
from autotrade.fmt import iso_moment

FALLBACK_DATASET = "sp500"  # what a failed download falls back to, unless --no-fallback


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no boolean equality
class PreparedData:
    """A validated OHLCV frame, its split dates and the `meta.json` record describing it.

    A multi-asset set is the first research asset's frame with the set's meta, plus `members` (every research
    asset, that first one included) and `held_out` (the asset research never sees; the report reveals it).
    """

    frame: pd.DataFrame
    splits: Splits
    meta: dict[str, Any]
    members: tuple[PreparedData, ...] = ()
    held_out: PreparedData | None = None

    @property
    def name(self) -> str:
        """The asset's (or set's) name: the dataset stem `prepare` wrote."""
        return str(self.meta.get("dataset") or self.meta.get("ticker") or "data")

    @property
    def assets(self) -> tuple[PreparedData, ...]:
        """The research assets: the members of a set, else this one."""
        return self.members or (self,)

    def window(self, name: Window | str) -> pd.DataFrame:
        """The rows of window `name` (train, val, test or full); ConfigError for any other name."""
        return self.frame.iloc[window_slices(self.frame.index, self.splits)[Window.named(name)]]

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
        """The data as the model and its candidates see it; meta keeps only the sha256 (no ticker, no source).

        The assets of a set are renamed asset1, asset2, … in their order: their names would tell the instrument.
        """
        if data.members:
            seen = [self.apply(member) for member in data.members]
            members = tuple(replace(m, meta={**m.meta, "dataset": f"asset{i}"}) for i, m in enumerate(seen, start=1))
            held = data.held_out and replace(self.apply(data.held_out), meta={"dataset": "held-out asset"})
            meta = {"sha256": data.meta.get("sha256"), "anonymized": True, "assets": [m.name for m in members]}
            return replace(members[0], meta=meta, members=members, held_out=held)
        frame = data.frame.copy()
        frame.index = frame.index + self.shift
        for column in frame.columns:
            frame[column] = frame[column] * (self.volume_scale if column == "Volume" else self.price_scale)
        splits = Splits(data.splits.val_start + self.shift, data.splits.test_start + self.shift)
        return PreparedData(frame, splits, {"sha256": data.meta.get("sha256"), "anonymized": True})

    def real_index(self, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """Anonymized dates back to the real ones (for the report)."""
        return index - self.shift


def prepare_data(
    *,
    ticker: str | None = "SPY",
    start: str = DEFAULT_START,
    end: str | None = None,
    csv: Path | str | Sequence[Path | str] | None = None,
    offline: bool = False,
    val_start: str | None = None,
    test_start: str | None = None,
    no_fallback: bool = False,
    data_dir: Path | str = Path("data"),
    notify: Notify = ignore,
    holdout_asset: str | None = None,
) -> PreparedData:
    """Get, validate and split the data, and write `<name>.csv`, train/val/test.csv and meta.json to `data_dir`.

    Source: `csv` if given, else the bundled sample named by `ticker` (None: SPY, i.e. the S&P 500) when
    `offline`, else a yfinance download of `ticker` from `start` to `end` (both inclusive; None: today). A CSV
    or bundled sample is used whole. A failed download falls back to the bundled S&P 500, saying so through
    `notify`, unless `no_fallback`.
    Writes are atomic, and a rerun with the same result rewrites nothing.

    Several comma-separated tickers, or several CSV files, make a set (`_prepare_set`); `holdout_asset` names
    one of them (by name, ticker or file) to keep out of research entirely.
    """
    ticker = ticker or "SPY"
    start_at = _date_flag("--start", start) or pd.Timestamp(DEFAULT_START)  # None only from a caller's start=None
    end_at = _date_flag("--end", end)
    val_at, test_at = _date_flag("--val-start", val_start), _date_flag("--test-start", test_start)
    notes: list[str] = []

    def tell(message: str) -> None:
        notes.append(message)
        notify(message)

    tickers = [part.strip() for part in ticker.split(",") if part.strip()]
    ticker = tickers[0] if len(tickers) == 1 else ticker  # `SPY,` is SPY, as `a,,b` is a and b
    files = [Path(csv)] if isinstance(csv, str | Path) else [Path(c) for c in csv or ()]
    if len(files) > 1 or (not files and len(tickers) > 1):
        sources: list[Source] = (
            [CsvSource(file) for file in files]
            if files
            else [BundledSource(name) if offline else YahooSource(name, start_at, end_at) for name in tickers]
        )
        names = [str(file) for file in files] or tickers
        return _prepare_set(names, sources, val_at, test_at, holdout_asset, Path(data_dir), tell, notes)
    if holdout_asset is not None:
        raise ConfigError("--holdout-asset needs several assets: give --ticker a comma-separated list or --csv twice")

    source: Source
    if files:
        source = CsvSource(files[0])
    elif offline:
        source = BundledSource(ticker)
    else:
        source = YahooSource(ticker, start_at, end_at)
    try:
        loaded = source.load(tell)
    except DataError as exc:
        if not isinstance(source, YahooSource):  # a bad file or sample name is the user's to fix, not to replace
            raise
        if no_fallback:
            raise DataError(f"could not download {ticker}: {exc}") from None
        tell(f"could not download {ticker}: {exc}; using the bundled S&P 500 sample (1999-2018) instead")
        loaded = replace(BundledSource(FALLBACK_DATASET).load(tell), fallback_reason=str(exc))

    splits = _choose_splits(loaded, val_at, test_at, tell)
    check_splits(loaded.frame, splits, loaded.name)
    return _publish(Path(data_dir), loaded, splits, notes)


def _prepare_set(
    asked: list[str],
    sources: list[Source],
    val_at: pd.Timestamp | None,
    test_at: pd.Timestamp | None,
    holdout_asset: str | None,
    data_dir: Path,
    tell: Notify,
    notes: list[str],
) -> PreparedData:
    """Several assets (`asked`: the tickers or files, as given) as one set: one frequency, shared split dates,
    each published under `assets/<name>/`.

    No download falls back to the bundled sample here: a stand-in asset would silently count twice.
    """
    loaded: list[SourceFrame] = []
    for name, source in zip(asked, sources, strict=True):
        try:
            loaded.append(source.load(tell))
        except DataError as exc:
            raise DataError(f"could not get {name}: {exc}") from None
    names = [item.name for item in loaded]
    if len(set(names)) < len(names):
        raise DataError(f"the same data is asked for twice ({', '.join(asked)} are {', '.join(names)})")
    # Names can differ for one series (a copied file): counted twice it weighs double, and held out it is no
    # unseen asset at all.
    for k, item in enumerate(loaded):
        for j, other in enumerate(loaded[:k]):
            if item.frame.equals(other.frame):
                raise DataError(f"{asked[j]} and {asked[k]} hold the same bars: give each asset once")
    frequencies = {item.name: bar_frequency(item.frame.index) for item in loaded}
    if len(set(frequencies.values())) > 1:
        listed = ", ".join(f"{name} is {kind}" for name, kind in frequencies.items())
        raise DataError(f"the assets' bar frequencies differ ({listed}): prepare assets of one frequency together")
    held = None
    if holdout_asset is not None:
        wanted = holdout_asset.strip().lower()
        matches = [
            item.name
            for item, given in zip(loaded, asked, strict=True)
            if wanted in (item.name.lower(), given.lower(), (item.ticker or "").lower())
        ]
        if not matches:
            raise ConfigError(f"--holdout-asset {holdout_asset!r} is none of the assets: {', '.join(names)}")
        held = matches[0]
    research = [name for name in names if name != held]
    if not research:
        raise ConfigError("--holdout-asset leaves no asset to research on")
    first = loaded[names.index(research[0])]
    splits = _choose_splits(first, val_at, test_at, tell)
    for item in loaded:
        check_splits(item.frame, splits, item.name)
    published = {item.name: _publish(data_dir / "assets" / item.name, item, splits, notes) for item in loaded}
    meta: dict[str, Any] = {
        "source": "set",
        "ticker": None,
        "dataset": "+".join(research),
        "description": f"{len(names)} assets, {frequencies[names[0]]}: "
        + ", ".join(f"{name} (held out)" if name == held else name for name in names),
        "assets": research,
        "held_out_asset": held,
        "frequency": frequencies[names[0]],
        "splits": splits.to_dict(),
        "asset_sha256": {name: published[name].meta["sha256"] for name in names},
        "notes": notes,
    }
    meta["sha256"] = hashlib.sha256(json.dumps(meta["asset_sha256"], sort_keys=True).encode()).hexdigest()
    previous = _read_meta(data_dir / "meta.json")
    if previous is not None and {k: v for k, v in previous.items() if k != "created_at"} == meta:
        meta = previous
    else:
        meta["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            atomic_write_json(data_dir / "meta.json", meta)
        except StorageError as exc:
            raise DataError(f"cannot write the prepared data to {data_dir}: {exc}") from None
    members = tuple(published[name] for name in research)
    return PreparedData(members[0].frame, splits, meta, members, published[held] if held else None)


def bar_frequency(index: pd.DatetimeIndex) -> str:
    """The bars' frequency class from their median spacing: intraday, daily, weekly or monthly."""
    if len(index) < 2:
        return "daily"
    spacing = pd.Series(index).diff().median()
    if spacing < pd.Timedelta(hours=20):
        return "intraday"
    if spacing < pd.Timedelta(days=4):
        return "daily"
    return "weekly" if spacing < pd.Timedelta(days=20) else "monthly"


def _choose_splits(
    loaded: SourceFrame, val_at: pd.Timestamp | None, test_at: pd.Timestamp | None, tell: Notify
) -> Splits:
    """The user's split dates where given, defaults for the rest (announced, since the user did not pick them)."""
    if val_at is not None and test_at is not None:
        return Splits(val_at, test_at)
    # A registered split holds only while the user keeps its test start; otherwise the rule picks validation.
    if loaded.splits is not None and test_at is None:
        defaults = loaded.splits
    else:
        defaults = default_splits(loaded.frame, test_start=test_at)
    splits = Splits(val_at if val_at is not None else defaults.val_start, defaults.test_start)
    tell(
        f"default splits: validation from {iso_moment(splits.val_start)}, test from {iso_moment(splits.test_start)} "
        "(--val-start/--test-start change them)"
    )
    return splits


def _publish(data_dir: Path, source: SourceFrame, splits: Splits, notes: list[str]) -> PreparedData:
    """Write the CSVs, then meta.json last: meta.json is the commit point that `load_prepared` trusts."""
    frame = source.frame
    intraday = bool((frame.index != frame.index.normalize()).any())
    date_format = "%Y-%m-%d %H:%M:%S" if intraday else "%Y-%m-%d"
    full_name = f"{source.name}.csv"
    slices = window_slices(frame.index, splits)
    windows = {str(window): frame.iloc[slices[window]] for window in SPLIT_WINDOWS}  # meta.json: plain names
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
        "first_date": iso_moment(frame.index[0]),
        "last_date": iso_moment(frame.index[-1]),
        "splits": splits.to_dict(),
        "windows": {
            window: {
                "rows": len(part),
                "first_date": iso_moment(part.index[0]),
                "last_date": iso_moment(part.index[-1]),
            }
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
    if meta is not None and "assets" in meta:
        return _load_set(data_dir, meta)
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
    frame = parse_canonical_csv(payload)
    if frame is None:  # not in the canonical form prepare writes (e.g. hand-edited): the validating parser
        frame = parse_ohlcv_csv(payload, str(csv_path))
    return PreparedData(frame, splits, meta)


def _load_set(data_dir: Path, meta: dict[str, Any]) -> PreparedData:
    """A prepared set: each asset's folder, checked against the sha256 the set recorded for it."""
    try:
        research = [str(name) for name in meta["assets"]]
        held = meta.get("held_out_asset")
        recorded = {str(k): str(v) for k, v in meta["asset_sha256"].items()}
        splits = Splits(pd.Timestamp(meta["splits"]["val_start"]), pd.Timestamp(meta["splits"]["test_start"]))
        if not research or any(Path(name).name != name for name in [*research, *([held] if held else [])]):
            raise ValueError("no valid 'assets' entry")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{data_dir / 'meta.json'} is damaged ({exc}): rerun `autotrade prepare`") from None
    loaded = {}
    for name in [*research, *([str(held)] if held else [])]:
        asset = load_prepared(data_dir / "assets" / name)
        if asset.meta.get("sha256") != recorded.get(name) or asset.splits != splits:
            raise DataError(f"{data_dir / 'assets' / name} changed since `autotrade prepare`: rerun it")
        loaded[name] = asset
    members = tuple(loaded[name] for name in research)
    return PreparedData(members[0].frame, splits, meta, members, loaded[str(held)] if held else None)


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
