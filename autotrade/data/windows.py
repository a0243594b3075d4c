"""Window names: the spans of the prepared bars that are split, evaluated and recorded.

Pandas-free, so that the CLI can offer them as choices without importing the data stack at `--help`.
"""

from __future__ import annotations

from enum import StrEnum

from autotrade.errors import ConfigError


class Window(StrEnum):
    """A named span of the prepared bars; its value is the name files and records use."""

    TRAIN = "train"  # before val_start: what a strategy is shaped on
    VAL = "val"  # [val_start, test_start): what research ranks strategies by
    TEST = "test"  # from test_start: held out, evaluated only by the report
    FULL = "full"  # every bar

    @classmethod
    def named(cls, name: str) -> Window:
        """The window called `name`; ConfigError naming the choices when there is none."""
        try:
            return cls(name)
        except ValueError:
            raise ConfigError(f"unknown window {name!r}: choose one of {', '.join(cls)}") from None


SPLIT_WINDOWS = (Window.TRAIN, Window.VAL, Window.TEST)  # disjoint, in date order, together the full history
RESEARCH_WINDOWS = (Window.TRAIN, Window.VAL)  # what research scores on; never the held-out test window
HELD_OUT_WINDOWS = (Window.TEST, Window.FULL)  # the windows holding test bars: each look spends some honesty
# Walk-forward train spans (data.plan.Folds): every bar before the fold, or a fixed number of bars before it.
WINDOW_MODES = ("expanding", "rolling")
MAX_FOLDS = 20
