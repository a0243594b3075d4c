"""The held-out test window: evaluated here, at report time, and nowhere else; every look is recorded.

The loop never reads `holdout.json` (prompts are built from the iteration records only), so no test
figure can reach the model. Each report that evaluates strategies on the test window appends one
reveal (when, which iterations, their test figures) to `holdout.json` and a `holdout_revealed` journal
event; the first reveal is shown on every later report, so a user knows the holdout has been looked at.
The append-only journal is the record of every look; `holdout.json` adds the figures. When the file is
lost, the looks are rebuilt from the journal (without their figures), so no earlier look is forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autotrade.data.prepared import PreparedData
from autotrade.data.windows import RESEARCH_WINDOWS, SPLIT_WINDOWS, Window
from autotrade.engine.backtest import WindowResult, run_window
from autotrade.errors import ConfigError
from autotrade.evaluation.evaluate import EvalSettings, Evaluation, evaluate_block, finish_gate
from autotrade.research.rundir import RunDir, now_iso
from autotrade.sandbox.pool import SandboxPool

HOLDOUT_FILE = "holdout.json"
HOLDOUT_VERSION = 1
ALL_WINDOWS = SPLIT_WINDOWS
# The test figures kept in holdout.json for `runs` and `compare` (which never re-evaluate).
KEPT_METRICS = (
    "total_return",
    "cagr",
    "sharpe",
    "max_drawdown",
    "num_trades",
    "buy_and_hold_return",
    "buy_and_hold_sharpe",
)


@dataclass(frozen=True)
class Reveal:
    """One look at the test window: when, which iterations, and what they scored there (None when not ok)."""

    at: str  # UTC, ISO 8601
    iterations: tuple[int, ...]
    test: Mapping[int, Mapping[str, Any]]  # iteration → {"status", and KEPT_METRICS when ok}
    buy_and_hold: Mapping[str, float | None]  # test-window buy-and-hold: total_return, sharpe, max_drawdown, cagr

    def to_dict(self) -> dict[str, Any]:
        """JSON form for holdout.json."""
        return {
            "at": self.at,
            "iterations": list(self.iterations),
            "test": {str(i): dict(m) for i, m in self.test.items()},
            "buy_and_hold": dict(self.buy_and_hold),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Reveal:
        """Rebuild from holdout.json."""
        return cls(
            at=str(raw["at"]),
            iterations=tuple(int(i) for i in raw["iterations"]),
            test={int(i): dict(m) for i, m in (raw.get("test") or {}).items()},
            buy_and_hold=dict(raw.get("buy_and_hold") or {}),
        )

    def test_return(self, iteration: int) -> float | None:
        """An iteration's test total return in this reveal, or None."""
        value = (self.test.get(iteration) or {}).get("total_return")
        return None if value is None else float(value)


@dataclass(frozen=True)
class Holdout:
    """This report's view of the test window.

    reveals: every recorded look, oldest first (this report's included when it looked).
    evaluations: this report's evaluations of the members on train, validation and test (empty when it did not look).
    buy_and_hold: buy-and-hold simulated per window under the run's settings (test only when it looked).
    withheld: why this report did not look although asked to, and how to make it look ("" when not withheld).
    """

    reveals: tuple[Reveal, ...]
    evaluations: Mapping[int, Evaluation] = field(default_factory=dict, repr=False, compare=False)
    # The same members on the asset research never saw (prepare --holdout-asset), every window of it.
    held_out: Mapping[int, Evaluation] = field(default_factory=dict, repr=False, compare=False)
    buy_and_hold: Mapping[str, WindowResult] = field(default_factory=dict, repr=False, compare=False)
    withheld: str = ""

    @property
    def first(self) -> Reveal | None:
        """The first look ever, or None when the test window has never been evaluated."""
        return self.reveals[0] if self.reveals else None

    @property
    def looked(self) -> bool:
        """True when this report evaluated strategies on the test window."""
        return bool(self.evaluations)


def holdout_path(run: RunDir) -> Path:
    """The run's holdout.json."""
    return run.path / HOLDOUT_FILE


def read_reveals(run: RunDir) -> tuple[Reveal, ...]:
    """Every look at the test window, oldest first; () when never looked; ConfigError when holdout.json is damaged.

    The looks holdout.json records, plus those only the journal does (the file was deleted or restored from an
    older copy): those come without test figures.
    """
    recorded = list(_recorded_reveals(run))
    looks: list[Reveal] = []
    for event in run.read_journal():
        if event.get("event") != "holdout_revealed":
            continue
        try:
            iterations = tuple(int(i) for i in event.get("iterations") or ())
        except (TypeError, ValueError):  # a hand-edited line: still a look, of unknown iterations
            iterations = ()
        journaled = Reveal(at=str(event.get("at")), iterations=iterations, test={}, buy_and_hold={})
        same = next((r for r in recorded if (r.at, r.iterations) == (journaled.at, journaled.iterations)), None)
        if same is not None:
            recorded.remove(same)
        looks.append(same or journaled)
    # What is left was recorded but not journaled: a report killed between writing holdout.json and the journal.
    return tuple(sorted([*looks, *recorded], key=lambda r: r.at))


def _recorded_reveals(run: RunDir) -> tuple[Reveal, ...]:
    """The looks holdout.json records; () when it does not exist."""
    path = holdout_path(run)
    if not path.exists():
        return ()
    raw = run.read_json(path)
    try:
        return tuple(Reveal.from_dict(r) for r in raw["reveals"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path} is damaged ({exc}); it records who looked at the test window: restore it from a backup"
        ) from None


def buy_and_hold_windows(
    data: PreparedData, settings: EvalSettings, windows: Sequence[Window]
) -> dict[Window, WindowResult]:
    """Buy-and-hold per window under the run's fill and costs (the engine's own always-long simulation)."""
    results = {}
    for name in windows:
        frame = data.window(name)
        results[name] = run_window(frame, np.ones(len(frame)), settings.backtest)
    return results


def _kept(evaluation: Evaluation) -> dict[str, Any]:
    """What holdout.json keeps of one member's test evaluation."""
    if not evaluation.ok or Window.TEST not in evaluation.windows:
        return {"status": str(evaluation.status), "message": evaluation.message[:300]}
    test = evaluation.windows[Window.TEST]
    return {"status": "ok", **{k: float(test[k]) for k in KEPT_METRICS}}


def reveal_holdout(
    run: RunDir,
    members: Sequence[int],
    blocks: Mapping[int, str],
    data: PreparedData,
    settings: EvalSettings,
    *,
    at: str | None = None,
    real_test_start: pd.Timestamp | None = None,
    pool: SandboxPool | None = None,
) -> Holdout:
    """Evaluate the members on train, validation and test, record the look, and return it with every earlier look.

    `real_test_start` is the test window's real first date when `data` is an anonymized view (`run --anonymize`):
    the record keeps the real calendar, as the report shows it.

    The look-ahead gate stays on: a strategy could behave differently only on bars it has never been run on.
    With no members nothing is evaluated and nothing is recorded.
    """
    earlier = read_reveals(run)
    if not members:
        return Holdout(reveals=earlier, buy_and_hold=buy_and_hold_windows(data, settings, RESEARCH_WINDOWS))
    gated = replace(settings, lookahead=True)
    evaluations = {
        i: finish_gate(
            evaluate_block(blocks[i], data, ALL_WINDOWS, gated, pool), blocks[i], data, gated, ALL_WINDOWS, pool
        )
        for i in members
    }
    held_out = {}
    if data.held_out is not None:
        asset = data.held_out
        held_out = {
            i: finish_gate(
                evaluate_block(blocks[i], asset, ALL_WINDOWS, gated, pool), blocks[i], asset, gated, pool=pool
            )
            for i in members
        }
    buy_and_hold = buy_and_hold_windows(data, settings, ALL_WINDOWS)
    bh_test = buy_and_hold[Window.TEST].metrics
    reveal = Reveal(
        at=at or now_iso(),
        iterations=tuple(members),
        test={
            i: _kept(e) | ({"held_out_asset": _kept(held_out[i])} if held_out else {}) for i, e in evaluations.items()
        },
        buy_and_hold={k: float(bh_test[k]) for k in ("total_return", "cagr", "sharpe", "max_drawdown")},
    )
    reveals = (*earlier, reveal)
    run.write_json(
        holdout_path(run),
        {
            "version": HOLDOUT_VERSION,
            "note": "Every evaluation of this run's strategies on the held-out test window, oldest first.",
            "test_start": str((real_test_start if real_test_start is not None else data.splits.test_start).date()),
            "data_sha256": str(data.meta.get("sha256")),
            "reveals": [r.to_dict() for r in reveals],
        },
    )
    run.journal("holdout_revealed", at=reveal.at, iterations=list(reveal.iterations), looks=len(reveals))
    return Holdout(reveals=reveals, evaluations=evaluations, held_out=held_out, buy_and_hold=buy_and_hold)
