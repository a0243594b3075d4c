"""What one evaluation runs a candidate on: assets × parts, each part a set of windows.

A plan names the prepared series (assets) and the windows scored on each. Without folds a part is the
prepared split itself (train, val, test, full). With walk-forward folds (`Folds`) the research period is cut
into consecutive folds, each with a train span and a validation span, and every fold is a part; the held-out
windows (test, full) are never folded. Evaluation (`evaluation/evaluate.py`) asks a plan for bars and slices
instead of reading split dates itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from autotrade.data.prepared import PreparedData
from autotrade.data.splits import MIN_ROWS, window_slices
from autotrade.data.windows import HELD_OUT_WINDOWS, MAX_FOLDS, WINDOW_MODES, Window
from autotrade.errors import ConfigError
from autotrade.fmt import iso_moment


@dataclass(frozen=True)
class Folds:
    """Walk-forward: `count` consecutive validation spans over the research period, each after its train span.

    The research period is cut into count + 1 equal blocks (scikit-learn's TimeSeriesSplit): fold j validates
    on block j + 1; its train span is every bar before it (expanding) or the same number of bars as the first
    fold's, just before it (rolling).
    """

    count: int
    mode: str = "expanding"

    def __post_init__(self) -> None:
        if not 2 <= self.count <= MAX_FOLDS:
            raise ConfigError(f"--folds must be between 2 and {MAX_FOLDS}, got {self.count}")
        if self.mode not in WINDOW_MODES:
            raise ConfigError(f"--window-mode must be one of {', '.join(WINDOW_MODES)}, got {self.mode!r}")

    def boundaries(self, research: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp | None]]:
        """(train start, validation start, validation end exclusive) of each fold, as dates of `research`'s bars;
        the last fold's end is None: it validates up to the end of the research period.

        ConfigError when a train or validation span would hold fewer bars than a split needs (splits.MIN_ROWS).
        """
        size = len(research) // (self.count + 1)
        if size < MIN_ROWS[Window.TRAIN]:
            raise ConfigError(
                f"--folds {self.count} leaves {size} bars per block of the {len(research)} research bars; "
                f"each needs at least {MIN_ROWS[Window.TRAIN]}: choose fewer folds"
            )
        first = len(research) - self.count * size
        spans = []
        for fold in range(self.count):
            val = first + fold * size
            train = 0 if self.mode == "expanding" else val - first
            end = research[val + size] if fold < self.count - 1 else None
            spans.append((research[train], research[val], end))
        return spans

    def describe(self, research: pd.DatetimeIndex) -> list[str]:
        """One line per fold with its dates, for prompts and the report."""
        spans = self.boundaries(research)
        lasts = [research[research.searchsorted(end) - 1] if end is not None else research[-1] for _, _, end in spans]
        return [
            f"fold{j}: train {iso_moment(train)} to {iso_moment(research[research.searchsorted(val) - 1])}, "
            f"validation {iso_moment(val)} to {iso_moment(last)}"
            for j, ((train, val, _), last) in enumerate(zip(spans, lasts, strict=True), start=1)
        ]


@dataclass(frozen=True, eq=False)  # eq=False: PreparedData holds a DataFrame
class AssetBars:
    """One asset's bars as its candidate process receives them, and where each part's windows lie in them."""

    name: str
    frame: pd.DataFrame
    val_position: int  # the first validation bar of `frame` (the look-ahead gate's train/validation boundary)
    parts: dict[str, dict[Window, slice]]  # part label -> rows of `frame` per window, in the plan's order


@dataclass(frozen=True, eq=False)
class EvalPlan:
    """Assets × windows (× folds): which prepared series a candidate runs on and which spans of each are scored."""

    assets: tuple[PreparedData, ...]
    windows: tuple[Window, ...]
    folds: Folds | None = None

    @classmethod
    def of(cls, data: PreparedData, windows: Iterable[Window | str], folds: Folds | None = None) -> EvalPlan:
        """The plan for prepared data (one asset or a set); ConfigError for a window name that is not a Window.

        Folds apply to research windows only: a plan that scores a held-out window is not folded.
        """
        chosen = tuple(Window.named(name) for name in windows)
        folded = folds if folds is not None and not any(w in HELD_OUT_WINDOWS for w in chosen) else None
        return cls(data.assets, chosen, folded)

    @property
    def labels(self) -> list[str]:
        """Part labels, asset by asset: '' for a lone part, else the asset's name, 'fold<j>' or both."""
        folds = [f"fold{j}" for j in range(1, self.folds.count + 1)] if self.folds else [""]
        assets = [asset.name for asset in self.assets] if len(self.assets) > 1 else [""]
        return ["/".join(x for x in (asset, fold) if x) for asset in assets for fold in folds]

    def bars(self) -> list[AssetBars]:
        """Each asset's bars: its research frame (train and validation), unless a window needs the test bars.

        Cutting the frame here is what keeps the test window out of a research candidate's reach: nothing it
        prints or raises can reveal bars it was never given. Fold dates come from the first asset's research
        bars, so every asset is cut on the same days; ConfigError when an asset whose history starts later would
        get a fold span shorter than a split needs.
        """
        held_out = any(window in HELD_OUT_WINDOWS for window in self.windows)
        spans = self.folds.boundaries(self.assets[0].research_frame().index) if self.folds else None
        labels = iter(self.labels)
        result = []
        for data in self.assets:
            frame = data.frame if held_out else data.research_frame()
            slices = window_slices(frame.index, data.splits)
            if spans is None:
                parts = {next(labels): {window: slices[window] for window in self.windows}}
                val_position = slices[Window.VAL].start
            else:
                parts = {}
                for train, val, end in spans:
                    rows = {
                        Window.TRAIN: slice(_row(frame, train), _row(frame, val)),
                        Window.VAL: slice(_row(frame, val), len(frame) if end is None else _row(frame, end)),
                    }
                    label = next(labels)
                    _check_span(self.folds, data.name, label, rows)
                    parts[label] = {window: rows[window] for window in self.windows if window in rows}
                val_position = _row(frame, spans[0][1])
            result.append(AssetBars(data.name, frame, val_position, parts))
        return result


def _row(frame: pd.DataFrame, moment: pd.Timestamp) -> int:
    return int(frame.index.searchsorted(moment))


def _check_span(folds: Folds, asset: str, label: str, rows: dict[Window, slice]) -> None:
    """ConfigError when a fold's train or validation span on `asset` holds fewer bars than a split needs."""
    for window, span in rows.items():
        if span.stop - span.start < MIN_ROWS[window]:
            raise ConfigError(
                f"--folds {folds.count}: {label}'s {window} span holds {span.stop - span.start} bars of {asset} "
                f"(fold dates are the first asset's); each needs at least {MIN_ROWS[window]}: choose "
                "fewer folds, or assets covering the same dates"
            )
