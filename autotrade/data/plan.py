"""What one evaluation runs a candidate on: assets × windows.

A plan names the prepared series (assets) and the windows scored on each. Today it holds exactly one
asset and windows of its one split (train, val, test, full); multi-asset and walk-forward evaluation
(folds) are meant to grow this type, so that evaluation (`evaluation/evaluate.py`) keeps asking a plan
for bars and windows instead of reading split dates itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from autotrade.data.prepared import PreparedData
from autotrade.data.splits import window_slices
from autotrade.data.windows import HELD_OUT_WINDOWS, Window


@dataclass(frozen=True, eq=False)  # eq=False: PreparedData holds a DataFrame
class AssetBars:
    """One asset's bars as its candidate process receives them, and where each planned window lies in them."""

    frame: pd.DataFrame
    val_position: int  # the first validation bar of `frame` (the look-ahead gate's train/validation boundary)
    windows: dict[Window, slice]  # rows of `frame`, in the plan's order


@dataclass(frozen=True, eq=False)
class EvalPlan:
    """Assets × windows: which prepared series a candidate runs on and which windows of each are scored."""

    assets: tuple[PreparedData, ...]
    windows: tuple[Window, ...]

    def __post_init__(self) -> None:
        # Evaluation records hold one metrics dict per window; several assets need a key per asset first.
        if len(self.assets) != 1:
            raise ValueError(f"an evaluation plan holds exactly one asset for now, got {len(self.assets)}")

    @classmethod
    def single(cls, data: PreparedData, windows: Iterable[Window | str]) -> EvalPlan:
        """The plan for one prepared series; ConfigError for a window name that is not a Window."""
        return cls((data,), tuple(Window.named(name) for name in windows))

    def bars(self) -> AssetBars:
        """The one asset's bars: its research frame (train and validation), unless a window needs the test bars.

        Cutting the frame here is what keeps the test window out of a research candidate's reach: nothing it
        prints or raises can reveal bars it was never given.
        """
        (data,) = self.assets
        held_out = any(window in HELD_OUT_WINDOWS for window in self.windows)
        frame = data.frame if held_out else data.research_frame()
        slices = window_slices(frame.index, data.splits)
        return AssetBars(frame, slices[Window.VAL].start, {window: slices[window] for window in self.windows})
