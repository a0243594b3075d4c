"""The one evaluation path every candidate takes: vet → isolated run → look-ahead gate → simulate → gates.

The harness, never the candidate, simulates fills and computes metrics: the candidate's process only
returns its feature columns and one signal per bar.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from autotrade.data.plan import EvalPlan, Folds
from autotrade.data.prepared import PreparedData, load_prepared
from autotrade.data.windows import RESEARCH_WINDOWS, Window
from autotrade.engine.backtest import BacktestSettings, WindowResult, run_window
from autotrade.engine.metrics import periods_per_year
from autotrade.errors import AutotradeError, CandidateError, ConfigError, SandboxError, UnsafeCodeError
from autotrade.evaluation.across import ACROSS, DEFAULT_ACROSS, aggregate_windows
from autotrade.evaluation.lookahead import (
    check_lookahead,
    cut_plan,
    position_changes,
    seed_for,
    split_for_budget,
    whole_cuts,
)
from autotrade.fileio import json_safe
from autotrade.sandbox.pool import CandidateOutput, Limits, SandboxPool, run_candidate
from autotrade.sandbox.protocol import TAIL_ROWS
from autotrade.sandbox.vet import vet_block
from autotrade.status import Status


@dataclass(frozen=True)
class EvalSettings:
    """How a candidate is run and simulated."""

    backtest: BacktestSettings = field(default_factory=BacktestSettings)
    timeout_s: float = 60.0
    memory_mb: int = 4096
    lookahead: bool = True
    # The run's private secret behind the gate's random cuts (state.json; never in a prompt), so that
    # report and resume reach the same verdicts; None draws a fresh one (a one-off backtest).
    gate_secret: int | None = None
    # Seconds the gate may spend before deferring random cuts (finish_gate); None: a third of timeout_s.
    gate_budget_s: float | None = None
    folds: Folds | None = None  # walk-forward over the research period (--folds, --window-mode); None: the split
    across: str = DEFAULT_ACROSS  # how parts (assets × folds) aggregate (--across)

    def __post_init__(self) -> None:
        # The worker turns these into kernel limits: an infinite or NaN time cannot be one.
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(
                f"timeout_s (--eval-timeout) must be a positive finite number of seconds, got {self.timeout_s!r}"
            )
        if not self.memory_mb > 0:
            raise ConfigError(f"memory_mb must be a positive number of MiB, got {self.memory_mb!r}")
        if self.across not in ACROSS:
            raise ConfigError(f"--across must be one of {', '.join(ACROSS)}, got {self.across!r}")


@dataclass(frozen=True)
class Evaluation:
    """The record of one evaluation: a status, and metrics per window when it ran.

    An evaluation of several parts (assets × folds, `data.plan`) keeps each part's metrics in `parts` and its
    curves in `part_curves`; `windows` then holds every metric aggregated `across` them (the headline).
    """

    status: Status
    message: str = ""
    error_type: str | None = None
    traceback: str = ""
    windows: dict[str, dict[str, float]] = field(default_factory=dict)
    curves: dict[str, WindowResult] = field(default_factory=dict, repr=False, compare=False)
    columns: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # mistakes the sandbox forgave, e.g. a generate_features without `return df`
    suspicious: tuple[str, ...] = ()  # why the result is implausible for its data (a warning, never a gate)
    deferred_cuts: tuple[int, ...] = ()  # look-ahead cuts still to check (finish_gate) before the result is trusted
    deferred_other: tuple[tuple[int, ...], ...] = ()  # the same for the second, third, … asset of a set
    output: str = ""  # what the candidate printed, truncated by the sandbox
    timings: dict[str, float] = field(default_factory=dict)
    parts: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    part_curves: dict[str, dict[str, WindowResult]] = field(default_factory=dict, repr=False, compare=False)
    across: str = DEFAULT_ACROSS

    @property
    def ok(self) -> bool:
        """True when the candidate passed every gate."""
        return self.status is Status.OK

    @property
    def pending_cuts(self) -> int:
        """How many look-ahead cuts are still to check on any asset."""
        return len(self.deferred_cuts) + sum(len(cuts) for cuts in self.deferred_other)

    def part_views(self) -> list[tuple[str, Evaluation]]:
        """Each part as an evaluation of its own (label, view); a single-part evaluation is its own only part."""
        if not self.parts:
            return [("", self)]
        return [
            (label, replace(self, windows=windows, curves=self.part_curves.get(label, {}), parts={}, part_curves={}))
            for label, windows in self.parts.items()
        ]

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite numbers become null); equity curves are left out."""
        return {
            "status": self.status.value,
            "message": self.message,
            "error_type": self.error_type,
            "traceback": self.traceback,
            "windows": json_safe({str(name): metrics for name, metrics in self.windows.items()}),  # plain JSON keys
            "columns": list(self.columns),
            "warnings": list(self.warnings),
            "suspicious": list(self.suspicious),
            "deferred_cuts": self.pending_cuts,
            "output": self.output,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
        } | ({"parts": json_safe(self.parts), "across": self.across} if self.parts else {})


def _failure(
    status: str, message: str, timings: dict[str, float], error_type: str | None = None, tb: str = ""
) -> Evaluation:
    return Evaluation(status=Status(status), message=message, error_type=error_type, traceback=tb, timings=timings)


def run_gated(
    source: str,
    frame: Any,
    val_position: int,
    seed: int,
    limits: Limits,
    lookahead: bool = True,
    cuts: Sequence[int] | None = None,
    budget_s: float | None = None,
    pool: SandboxPool | None = None,
) -> tuple[CandidateOutput, tuple[int, ...]]:
    """The block's full run and, unless `lookahead` is off, the look-ahead gate over it; CandidateError if either fails.

    `val_position` is the first validation bar of `frame`; `seed` (lookahead.seed_for) draws the random cuts,
    or `cuts` names them. Returns the output and the cuts deferred because the whole gate would have taken
    more than `budget_s` (default: a third of the time limit; a loop-heavy block): check those before
    trusting the result. `pool` runs the children (run_candidate: None gives the call a pool of its own).
    """
    deferred: list[int] = []

    def plan(signals: np.ndarray, features_s: float) -> list[int]:
        if not lookahead:
            return []
        if cuts is not None:
            return list(cuts)
        placed, drawn = cut_plan(frame, signals, val_position, seed)
        now, later = split_for_budget(
            placed,
            drawn,
            features_s / max(1, len(frame)),
            limits.workers,
            budget_s if budget_s is not None else limits.timeout_s / 3,
        )
        deferred.extend(later)
        return now

    output = run_candidate(
        source, frame, plan, limits, tail_rows=TAIL_ROWS, whole=whole_cuts(len(frame), val_position), pool=pool
    )
    if lookahead:
        check_lookahead(output, frame.index, output.steps)
    return output, tuple(deferred)


def finish_gate(
    evaluation: Evaluation,
    block: str,
    data: PreparedData,
    settings: EvalSettings,
    windows: Sequence[Window | str] = RESEARCH_WINDOWS,
    pool: SandboxPool | None = None,
) -> Evaluation:
    """Check the cuts a loop-heavy candidate's evaluation (of `windows`) deferred; the evaluation, or its failure."""
    if not evaluation.pending_cuts:
        return evaluation
    bars = EvalPlan.of(data, windows, settings.folds).bars()
    limits = Limits(timeout_s=settings.timeout_s, memory_mb=settings.memory_mb)
    for asset, cuts in zip(bars, (evaluation.deferred_cuts, *evaluation.deferred_other), strict=False):
        if not cuts:
            continue
        try:
            run_gated(block, asset.frame, asset.val_position, 0, limits, cuts=cuts, pool=pool)
        except CandidateError as exc:
            message = f"on {asset.name}: {exc}" if len(bars) > 1 else str(exc)
            return _failure(exc.status, message, dict(evaluation.timings), exc.error_type, exc.traceback)
    return replace(evaluation, deferred_cuts=(), deferred_other=())


def evaluate_block(
    block: str,
    data: PreparedData,
    windows: Sequence[Window | str] = RESEARCH_WINDOWS,
    settings: EvalSettings | None = None,
    pool: SandboxPool | None = None,
) -> Evaluation:
    """Evaluate an agent block on the prepared data; candidate problems become a status, never an exception.

    Only the research frame (train and validation) reaches the candidate unless a window needs the
    held-out bars (EvalPlan.bars), so nothing the candidate prints or raises during research can reveal
    the test window. ConfigError for a window name that is not a Window, before any candidate code runs.
    `pool` runs the sandboxed children; a caller evaluating more than once passes its own (None starts
    and stops a server for this one evaluation). A set of assets runs the candidate once per asset; folds
    (settings.folds) score each asset's one run on every fold's spans.
    """
    settings = settings or EvalSettings()
    assets = EvalPlan.of(data, windows, settings.folds).bars()
    several = len(assets) > 1
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        vetted = vet_block(block)
    except UnsafeCodeError as exc:
        return _failure("rejected", str(exc), {"vet_s": time.perf_counter() - started})
    except CandidateError as exc:
        return _failure(exc.status, str(exc), {"vet_s": time.perf_counter() - started}, exc.error_type, exc.traceback)
    timings["vet_s"] = time.perf_counter() - started

    secret = settings.gate_secret if settings.gate_secret is not None else secrets.randbits(64)
    limits = Limits(timeout_s=settings.timeout_s, memory_mb=settings.memory_mb)
    outputs: list[tuple[CandidateOutput, tuple[int, ...]]] = []
    for number, asset in enumerate(assets):
        mark = time.perf_counter()
        try:
            output, deferred = run_gated(
                vetted.source,
                asset.frame,
                asset.val_position,
                # One seed per asset: the cuts a candidate could learn on one asset say nothing of the next.
                seed_for(vetted.source, secret) + number,
                limits,
                settings.lookahead,
                budget_s=settings.gate_budget_s,
                pool=pool,
            )
            timings["run_s"] = timings.get("run_s", 0.0) + output.timings["run_s"]
            spent = time.perf_counter() - mark - output.timings["run_s"]
            timings["lookahead_s"] = timings.get("lookahead_s", 0.0) + spent
            timings["gate_cuts"] = timings.get("gate_cuts", 0.0) + float(len(output.steps))
        except CandidateError as exc:
            timings["total_s"] = time.perf_counter() - started
            message = f"on {asset.name}: {exc}" if several else str(exc)
            return _failure(exc.status, message, timings, exc.error_type, exc.traceback)
        except SandboxError:
            raise  # the machine's problem: no candidate code ran, so it is no candidate's outcome
        except Exception as exc:  # noqa: BLE001 - whatever a candidate provokes is its outcome, never the end of a run
            timings["total_s"] = time.perf_counter() - started
            return _failure(
                "runtime_error",
                f"the harness could not evaluate this candidate ({type(exc).__name__}: {exc})",
                timings,
                "HarnessError",
                traceback.format_exc(limit=-8),
            )
        outputs.append((output, deferred))

    mark = time.perf_counter()
    part_curves: dict[str, dict[str, WindowResult]] = {}
    found: list[str] = []
    for asset, (output, _) in zip(assets, outputs, strict=True):
        for label, spans in asset.parts.items():
            part_curves[label] = {}
            for name, rows in spans.items():
                if rows.stop <= rows.start:
                    raise AutotradeError(f"window '{name}' has no bars in the prepared data")
                part_curves[label][name] = run_window(asset.frame.iloc[rows], output.signals[rows], settings.backtest)
            prefix = f"{label}: " if label else ""
            found += [prefix + why for why in sharpe_suspicions(asset.frame, part_curves[label])]
        found += [(f"{asset.name}: " if several else "") + why for why in hit_suspicions(asset.frame, output.signals)]
    timings["backtest_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started

    parts = {label: {name: r.metrics for name, r in curves.items()} for label, curves in part_curves.items()}
    single = len(parts) == 1
    metrics = next(iter(parts.values())) if single else aggregate_windows(parts, settings.across)
    status, message = Status.OK, ""
    if any(not np.isfinite(r.equity.to_numpy()).all() for curves in part_curves.values() for r in curves.values()):
        status, message = Status.NAN_EQUITY, "the equity curve holds NaN or infinite values"
    elif Window.VAL in metrics and metrics[Window.VAL]["num_trades"] == 0:
        status = Status.NO_TRADES
        idle = [label for label, part in parts.items() if part.get(Window.VAL, {}).get("num_trades") == 0]
        where = "" if single else f" of {', '.join(idle)}"
        message = f"the strategy never trades in the validation window{where} (a do-nothing strategy scores nothing)"
    first, _ = outputs[0]
    return Evaluation(
        status=status,
        message=message,
        windows=metrics,
        curves=next(iter(part_curves.values())) if single else {},
        columns=tuple(first.columns),
        warnings=tuple(dict.fromkeys(w for output, _ in outputs for w in output.warnings)),
        suspicious=tuple(dict.fromkeys(found)),
        deferred_cuts=outputs[0][1],
        deferred_other=tuple(deferred for _, deferred in outputs[1:]),
        output=first.output,
        timings=timings,
        parts={} if single else parts,
        part_curves={} if single else part_curves,
        across=settings.across,
    )


SUSPICIOUS_SHARPE = 4.0  # a validation Sharpe above this on daily bars is rarely real
SUSPICIOUS_HITS = 5.0  # z-score of next-bar hits over the position changes, against a coin flip
MIN_DECISIONS = 30  # position changes needed before a hit rate means anything


def suspicions(frame: Any, signals: np.ndarray, metrics: dict[str, dict[str, float]]) -> tuple[str, ...]:
    """Why a result is implausible for daily data, for a look-ahead no gate caught: the second line of defence.

    Checked: a validation Sharpe above SUSPICIOUS_SHARPE, and position changes whose next bar moved their
    way (up after a buy, down after a sell) far more often than a coin flip would.
    """
    sharpe = (metrics.get(Window.VAL) or {}).get("sharpe")
    return (*_sharpe_suspicion(frame, sharpe), *hit_suspicions(frame, signals))


def sharpe_suspicions(frame: Any, curves: dict[str, WindowResult]) -> tuple[str, ...]:
    """The Sharpe check of `suspicions` on one part's curves."""
    val = curves.get(Window.VAL)
    return _sharpe_suspicion(frame, val.metrics.get("sharpe") if val is not None else None)


def _sharpe_suspicion(frame: Any, sharpe: float | None) -> tuple[str, ...]:
    daily = periods_per_year(frame.index) <= 366
    if daily and sharpe is not None and math.isfinite(sharpe) and sharpe > SUSPICIOUS_SHARPE:
        return (f"validation Sharpe {sharpe:.1f} is implausible for daily data",)
    return ()


def hit_suspicions(frame: Any, signals: np.ndarray) -> tuple[str, ...]:
    """The next-bar hit check of `suspicions` on one asset's signals."""
    changes = position_changes(signals)
    changes = changes[changes < len(frame) - 1]
    if len(changes) < MIN_DECISIONS:
        return ()
    close = frame["Close"].to_numpy(dtype=float)
    moved_up = close[changes + 1] > close[changes]
    bought = signals[changes] == 1.0
    hits = int((moved_up == bought).sum())
    z = (hits - len(changes) / 2) / math.sqrt(len(changes) / 4)
    if z <= SUSPICIOUS_HITS:
        return ()
    return (
        f"{hits} of {len(changes)} position changes ({hits / len(changes):.0%}) were followed by a "
        "next bar moving their way, far above chance: check for look-ahead",
    )


def check_sandbox(pool: SandboxPool) -> float:
    """Evaluate the baseline block on a small synthetic frame in real worker children of `pool`; the seconds it took.

    What `autotrade doctor` proves with it: this machine's sandbox runs candidates. Raises
    SandboxError, or AutotradeError when the evaluation itself fails.
    """
    import pandas as pd

    from autotrade.candidate import baseline_source, extract_block

    index = pd.bdate_range("2020-01-01", periods=300, name="Date")
    close = 100 + np.cumsum(np.random.default_rng(0).normal(0, 1, 300))
    frame = pd.DataFrame(
        {
            "Open": close,
            "High": close + 1,
            "Low": close - 1,
            "Close": close,
            "Adj Close": close,
            "Volume": np.full(300, 1e6),
        },
        index=index,
    )
    started = time.perf_counter()
    output = pool.run_candidate(extract_block(baseline_source()), frame, [150, 250], Limits(timeout_s=60))
    check_lookahead(output, frame.index, output.steps)
    return time.perf_counter() - started


def backtest_block(
    block: str, data_dir: Path, windows: Sequence[str], backtest: BacktestSettings, timeout_s: float, pool: SandboxPool
) -> Evaluation:
    """`autotrade backtest`: evaluate `block` on the prepared data in `data_dir`, deferred cuts checked too.

    A one-off verdict is a whole one. Raises DataError when there is no prepared data.
    """
    data = load_prepared(data_dir)
    settings = EvalSettings(backtest=backtest, timeout_s=timeout_s)
    return finish_gate(evaluate_block(block, data, windows, settings, pool), block, data, settings, windows, pool)


def find_data_dir(start: Path) -> Path:
    """The prepared data directory: $AUTOTRADE_DATA, else the nearest `data/meta.json` above `start` or the cwd."""
    if env_dir := os.environ.get("AUTOTRADE_DATA"):
        return Path(env_dir)
    for base in (Path.cwd(), start.resolve().parent):
        for directory in (base, *base.parents):
            if (directory / "data" / "meta.json").is_file():
                return directory / "data"
    return Path("data")


def run_trade_py(name: str, trade_py: str) -> NoReturn:
    """The first act of every trade.py the product writes, just above its block: the block never runs here.

    Run as a script, the file's block is evaluated in the sandbox and the original output contract
    printed; imported, the file is refused (importing would run the block's top level in the
    importer's process).
    """
    if name != "__main__":
        raise ImportError(
            f"{trade_py}: a trade.py runs its strategy only inside autotrade's sandbox and cannot be "
            "imported; run it (`python trade.py`) or evaluate it with `autotrade backtest FILE`"
        )
    print_trade_py_results(trade_py)
    raise SystemExit(0)


def print_trade_py_results(trade_py: str) -> None:
    """`python trade.py`: evaluate the file on train and validation and print the original output contract."""
    from autotrade.candidate import read_block

    path = Path(trade_py)
    try:
        with SandboxPool() as pool:
            pool.start()  # the server imports pandas while the data loads
            data = load_prepared(find_data_dir(path))
            block = read_block(path)
            evaluation = finish_gate(evaluate_block(block, data, pool=pool), block, data, EvalSettings(), pool=pool)
    except AutotradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if not evaluation.windows:
        print(f"error: {evaluation.status}: {evaluation.message}", file=sys.stderr)
        raise SystemExit(1)
    print(f"train_return: {evaluation.windows[Window.TRAIN]['total_return']:.6f}")
    print(f"val_return: {evaluation.windows[Window.VAL]['total_return']:.6f}")
    for name, metrics in evaluation.to_record()["windows"].items():
        print(json.dumps({"window": name, **metrics}))
    if not evaluation.ok:
        print(f"status: {evaluation.status}: {evaluation.message}", file=sys.stderr)
        raise SystemExit(1)
