"""What a run found, honestly: the leaderboard, the held-out test, overfitting statistics, failures, diversity, spend.

Compute only (render in `report_render`, store there too). `build_report` reads a run directory and the run's
own prepared data (its sha256 must match the run's record), re-evaluates the ok trials on the research windows
for their per-bar returns (the records keep metrics, not curves), evaluates the population on the test window
(recorded by `holdout`), and returns one frozen `Report`. `summarize_run` is the cheap version for `runs`
and `compare`: records and files only, nothing re-evaluated.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from autotrade.candidate import extract_block
from autotrade.data.prepared import Anonymization, PreparedData, load_prepared
from autotrade.data.windows import RESEARCH_WINDOWS, SPLIT_WINDOWS
from autotrade.engine.metrics import periods_per_year
from autotrade.engine.stats import (
    Degradation,
    deflated_sharpe_ratio,
    degradation,
    expected_max_sharpe,
    pbo_cscv,
    probabilistic_sharpe_ratio,
    sharpe_moments,
)
from autotrade.errors import AutotradeError, DataError
from autotrade.evaluation.evaluate import EvalSettings, Evaluation, evaluate_block
from autotrade.fmt import num
from autotrade.report.diversity import CollapseEpisode, Diversity, collapse_episodes, measure_diversity
from autotrade.report.holdout import Holdout, Reveal, buy_and_hold_windows, read_reveals, reveal_holdout
from autotrade.report.plots import chain_windows
from autotrade.report.trials import TrialCount, count_trials
from autotrade.research.attempt import Attempt
from autotrade.research.rundir import RunDir, RunState, anonymization, data_identity, eval_settings, now_iso
from autotrade.sandbox.pool import SandboxPool

if TYPE_CHECKING:
    from autotrade.research.config import RunSettings

MAX_TRIALS = 200  # ok trials re-evaluated for PBO (about 0.1 s each); beyond it an evenly spaced subset
PBO_BLOCKS = 16
PBO_MIN_TRIALS = 4
DSR_BAR = 0.95  # the usual bar: a DSR at or above it says the best is likely more than luck
REPORT_JSON = "report.json"

# Failures without an exception type, named for the failure table.
# -- pieces of the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One iteration on the leaderboard."""

    iteration: int
    parent: int | None
    status: str
    error_type: str | None
    message: str
    train: Mapping[str, float | None]
    val: Mapping[str, float | None]
    objective: float | None
    rank: int | None  # 1-based place in the population, None when not a member
    suspicious: tuple[str, ...] = ()  # why an ok result is implausible for its data (evaluation.suspicions)


@dataclass(frozen=True)
class Share:
    """A count and its share (fraction) of some total."""

    label: str
    count: int
    share: float


@dataclass(frozen=True)
class Taxonomy:
    """Outcomes by status (shares of all iterations) and failures by exception type (shares of failures)."""

    iterations: int
    failures: int
    by_status: tuple[Share, ...]
    by_error: tuple[Share, ...]
    structure_twins: int = 0  # duplicates of an earlier ok attempt's structure
    position_twins: int = 0  # duplicates of a population member's validation positions
    saved_s: float = 0.0  # evaluation seconds the structure twins reused instead of spending


@dataclass(frozen=True)
class Spend:
    """Model tokens and seconds (committed iterations plus model calls of interrupted attempts), and wall time."""

    prompt_tokens: int
    completion_tokens: int
    model_calls: int
    model_s: float
    eval_s: float
    wall_s: float
    interrupted_calls: int  # replies whose iteration never committed (killed or redone)
    interrupted_tokens: int
    usage_estimated: bool  # some call's usage was estimated from characters (the server sent none)
    repaired: int  # iterations repair saved: ok after at least one repair turn (--repair)
    repair_calls: int  # repair turns of committed iterations (their tokens are counted above too)
    repair_tokens: int


@dataclass(frozen=True)
class Overfitting:
    """Overfitting statistics of the best iteration (see `figures` for what each means).

    Sharpe ratios are annualised for display; inside the formulas they are per period (per bar).
    """

    best_iteration: int | None
    n_trials: int  # N of the DSR: distinct strategies that ran, failures included (report.trials)
    n_ok_trials: int  # of them, the ok ones: the N a count of ok trials alone would give
    sharpe: float | None  # the best's validation Sharpe, annualised
    n_obs: int  # its validation returns
    skew: float | None
    kurtosis: float | None  # non-excess (normal = 3)
    trials_sharpe_var: float | None  # variance of the ok trials' annualised validation Sharpe ratios
    expected_max_sharpe: float | None  # annualised: what N unskilled trials would reach
    psr: float | None
    dsr: float | None  # with n_trials: the one the verdict uses
    dsr_ok_only: float | None  # with n_ok_trials, shown beside it: what counting only ok trials would claim
    pbo: float | None
    pbo_trials: int
    pbo_oos_loss: float | None  # share of splits where the in-sample best lost money out of sample
    sharpe_path: Degradation | None  # annualised Sharpe: train → validation → test
    cagr_path: Degradation | None
    notes: tuple[str, ...]  # why a figure is missing, or how it was computed when unusual


@dataclass(frozen=True)
class Figure:
    """One headline figure: label, display text, and one plain sentence on what it means."""

    key: str
    label: str
    text: str
    meaning: str


@dataclass(frozen=True)
class Curves:
    """Growth-of-1 curves for the equity plot (each window restarts from cash), and the split dates."""

    members: Mapping[int, pd.Series] = field(repr=False)
    buy_and_hold: pd.Series = field(repr=False)
    val_start: pd.Timestamp
    test_start: pd.Timestamp | None  # None when the test window was not evaluated by this report


@dataclass(frozen=True)
class Report:
    """Everything `autotrade report` shows for one run."""

    name: str
    path: Path
    generated_at: str
    created_at: str
    model: str
    endpoint: str
    policy: str
    objective: str
    fill: str
    cost_bps: float
    data: Mapping[str, Any]  # ticker, sha256, first/last dates, val_start, test_start
    state: str  # running, stopped or finished
    stop_reason: str | None
    max_iter: int
    rows: tuple[Row, ...]
    population: tuple[int, ...]
    best_iteration: int | None
    holdout: Holdout
    overfitting: Overfitting
    figures: tuple[Figure, ...]
    taxonomy: Taxonomy
    diversity: Diversity
    collapses: tuple[CollapseEpisode, ...]  # each time the search collapsed into one family, and what followed
    spend: Spend
    curves: Curves
    notes: tuple[str, ...]
    assets: tuple[str, ...] = ()  # the research assets of a set (one name for a single series)
    held_out_asset: str | None = None  # prepare --holdout-asset: the asset research never saw

    @property
    def iterations(self) -> int:
        """Committed iterations."""
        return len(self.rows)

    @property
    def ok(self) -> int:
        """Iterations with status ok."""
        return sum(r.status == "ok" for r in self.rows)


# -- small helpers ---------------------------------------------------------------------------------


def run_policy(config: Mapping[str, Any]) -> str:
    """Who proposed the candidates: a model (default) or a built-in policy such as `random`."""
    settings = config.get("settings") or {}
    return str(config.get("policy") or settings.get("policy") or "model")


def endpoint_host(config: Mapping[str, Any]) -> str:
    """The endpoint's host:port (never credentials), or '—'."""
    parts = urlsplit(str((config.get("model") or {}).get("base_url") or ""))
    if not parts.hostname:
        return "—"
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname


def _float(value: Any) -> float | None:
    """A finite float, or None."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _window(attempt: Attempt, name: str) -> dict[str, float | None]:
    """One window's metrics of an attempt (empty when it did not run)."""
    return {k: _float(v) for k, v in (attempt.windows.get(name) or {}).items()}


def evaluated_block(run: RunDir, attempt: Attempt) -> str | None:
    """The agent block an iteration evaluated: from its record, else from iter_<i>_trade.py."""
    if attempt.block:
        return attempt.block
    path = run.iter_path(attempt.iteration, "trade.py")
    if not path.is_file():
        return None
    try:
        return extract_block(path.read_text(encoding="utf-8"))
    except AutotradeError:
        return None


def _committed(run: RunDir) -> tuple[RunState, list[Attempt]]:
    """The committed state and its attempts; ConfigError when state.json is missing or a file is damaged."""
    state = run.committed_state()
    return state, run.records(state.next_iteration)


def _returns(evaluation: Evaluation, windows: Sequence[str]) -> np.ndarray:
    """Per-bar simple returns of the named windows, concatenated (each window's first bar has none)."""
    parts = [evaluation.curves[w].equity.pct_change().to_numpy()[1:] for w in windows]
    return np.concatenate(parts) if parts else np.empty(0)


def load_run_data(run: RunDir, config: Mapping[str, Any], data_dir: Path | None = None) -> PreparedData:
    """The run's own prepared data (or `data_dir`'s), checked against the sha256 and splits the run recorded."""
    recorded = config.get("data") or {}
    folder = Path(data_dir or (config.get("settings") or {}).get("data_dir") or recorded.get("dir") or "data")
    try:
        data = load_prepared(folder)
    except DataError as exc:
        raise DataError(
            f"{exc} (run {run.name!r} used the data in {recorded.get('dir') or folder}; "
            "pass --data DIR to point at a copy)"
        ) from None
    pinned = {k: recorded.get(k) for k in ("sha256", "val_start", "test_start")}
    found = data_identity(data)
    if found != pinned:
        raise DataError(
            f"the prepared data in {folder} is not the data run {run.name!r} used "
            f"(sha256 {str(found['sha256'])[:12]}…, splits {found['val_start']}/{found['test_start']}; "
            f"the run recorded {str(pinned['sha256'])[:12]}…, {pinned['val_start']}/{pinned['test_start']}): "
            "restore that data or pass --data DIR"
        )
    return data


# -- the parts ---------------------------------------------------------------------------------------


def failure_taxonomy(attempts: Sequence[Attempt]) -> Taxonomy:
    """Counts and shares by status (of all iterations) and by exception type (of failures; typeless ones by status)."""
    total = len(attempts)
    statuses = Counter(a.status.value for a in attempts)
    failures = [a for a in attempts if not a.ok]
    kinds = Counter(a.error_type or a.status.label for a in failures)
    return Taxonomy(
        iterations=total,
        failures=len(failures),
        by_status=tuple(Share(s, n, n / total) for s, n in sorted(statuses.items(), key=lambda t: (-t[1], t[0]))),
        by_error=tuple(Share(k, n, n / len(failures)) for k, n in sorted(kinds.items(), key=lambda t: (-t[1], t[0]))),
        structure_twins=sum(a.structure_twin for a in attempts),
        position_twins=sum(a.position_twin for a in attempts),
        saved_s=sum(a.saved_s for a in attempts),
    )


def spend_of(
    attempts: Sequence[Attempt],
    journal: Sequence[Mapping[str, Any]],
    state: RunState | None,
    active: bool,
    policy: str = "model",
) -> Spend:
    """Tokens and seconds of the committed iterations, plus model replies the journal saw whose iteration never
    committed.

    A reply (with its repair turns) is pending from its `model_reply` event until its iteration's
    `iteration_committed`; the iteration starting again (a redo after a kill), a first reply again, or the run no
    longer running means those replies were spent for nothing. A built-in policy (`random`) makes no model calls.
    """
    pending: dict[int, list[Mapping[str, Any]]] = {}
    lost: list[Mapping[str, Any]] = []
    for event in journal if policy == "model" else ():
        kind, i = event.get("event"), event.get("iteration")
        if kind == "model_reply" and isinstance(i, int):
            if not event.get("repair") and i in pending:
                lost.extend(pending.pop(i))
            pending.setdefault(i, []).append(event)
        elif kind == "iteration_committed" and isinstance(i, int):
            pending.pop(i, None)
        elif kind == "iteration_started" and isinstance(i, int) and i in pending:
            lost.extend(pending.pop(i))
    if not active:
        lost.extend(event for events in pending.values() for event in events)
    lost_tokens = [(int(e.get("prompt_tokens") or 0), int(e.get("completion_tokens") or 0)) for e in lost]
    calls = sum(len(a.turns) for a in attempts) if policy == "model" else 0
    totals = state.totals if state else {}
    return Spend(
        prompt_tokens=sum(a.prompt_tokens for a in attempts) + sum(p for p, _ in lost_tokens),
        completion_tokens=sum(a.completion_tokens for a in attempts) + sum(c for _, c in lost_tokens),
        model_calls=calls + len(lost),
        model_s=sum(a.latency_s for a in attempts) + sum(float(e.get("latency_s") or 0.0) for e in lost),
        eval_s=sum(a.eval_s for a in attempts),
        wall_s=float(totals.get("wall_s") or 0.0),
        interrupted_calls=len(lost),
        interrupted_tokens=sum(p + c for p, c in lost_tokens),
        usage_estimated=any(a.usage_estimated for a in attempts),
        repaired=sum(a.repaired for a in attempts),
        repair_calls=sum(len(a.repair_turns) for a in attempts),
        repair_tokens=sum(t.prompt_tokens + t.completion_tokens for a in attempts for t in a.repair_turns),
    )


def overfitting_of(
    attempts: Sequence[Attempt],
    best: int | None,
    research: Mapping[int, Evaluation],
    holdout: Holdout,
    ppy: float,
    trials: TrialCount,
) -> Overfitting:
    """DSR, PSR, PBO and degradation for the best iteration (figures that cannot be computed are None, with a note).

    The DSR's N is `trials.ran`; the variance of Sharpe ratios across trials comes from the ok ones, the only ones
    with a validation Sharpe.
    """
    notes: list[str] = []
    ok = [a for a in attempts if a.ok]
    sharpes = [s for a in ok if (s := _window(a, "val").get("sharpe")) is not None]
    n_trials = trials.ran
    var = float(np.var(sharpes, ddof=1)) if len(sharpes) >= 2 else 0.0
    sharpe = skew = kurt = psr = dsr = dsr_ok = emax = None
    n_obs = 0
    if best is None:
        notes.append("no ok iteration: there is no best strategy to test")
    elif best not in research:
        notes.append(f"iteration {best} could not be re-evaluated, so its daily returns are unavailable")
    else:
        moments = sharpe_moments(research[best].curves["val"].equity.pct_change().to_numpy())
        sharpe, skew, kurt, n_obs = moments.sr * math.sqrt(ppy), moments.skew, moments.kurtosis, moments.n_obs
        emax = expected_max_sharpe(max(n_trials, 1), var)
        try:
            psr = probabilistic_sharpe_ratio(moments.sr, 0.0, n_obs, skew, kurt)
            dsr = deflated_sharpe_ratio(moments.sr, n_obs, skew, kurt, max(n_trials, 1), var / ppy)
            dsr_ok = deflated_sharpe_ratio(moments.sr, n_obs, skew, kurt, max(trials.ok, 1), var / ppy)
        except ValueError as exc:
            notes.append(f"PSR/DSR undefined for these returns ({exc})")

    pbo = oos_loss = None
    columns = {i: _returns(e, RESEARCH_WINDOWS) for i, e in sorted(research.items())}
    columns = {i: c for i, c in columns.items() if c.size and np.isfinite(c).all()}
    if len(columns) >= PBO_MIN_TRIALS and len({c.size for c in columns.values()}) == 1:
        matrix = np.column_stack(list(columns.values()))
        if matrix.shape[0] >= 2 * PBO_BLOCKS:
            result = pbo_cscv(matrix, n_blocks=PBO_BLOCKS)
            pbo, oos_loss = result.pbo, result.prob_oos_loss
        else:
            notes.append(f"PBO needs at least {2 * PBO_BLOCKS} bars of returns")
    else:
        notes.append(f"PBO needs at least {PBO_MIN_TRIALS} ok trials (this run has {len(columns)})")
    if len(columns) < len(ok) and len(columns) >= PBO_MIN_TRIALS:
        notes.append(f"PBO over {len(columns)} of the {len(ok)} ok trials (evenly spaced, population included)")

    sharpe_path = cagr_path = None
    if best is not None:
        train, val = _window(attempts[best], "train"), _window(attempts[best], "val")
        test = holdout.evaluations.get(best)
        test_metrics = test.windows.get("test") if test is not None and test.ok else None
        if train.get("sharpe") is not None and val.get("sharpe") is not None:
            sharpe_path = degradation(
                train["sharpe"], val["sharpe"], None if test_metrics is None else float(test_metrics["sharpe"])
            )
        if train.get("cagr") is not None and val.get("cagr") is not None:
            cagr_path = degradation(
                train["cagr"], val["cagr"], None if test_metrics is None else float(test_metrics["cagr"])
            )
        if test is not None and not test.ok:
            notes.append(f"iteration {best} failed on the test window: {test.status}: {test.message}")
    return Overfitting(
        best_iteration=best,
        n_trials=n_trials,
        n_ok_trials=trials.ok,
        sharpe=sharpe,
        n_obs=n_obs,
        skew=skew,
        kurtosis=kurt,
        trials_sharpe_var=var if ok else None,
        expected_max_sharpe=emax,
        psr=psr,
        dsr=dsr,
        dsr_ok_only=dsr_ok,
        pbo=pbo,
        pbo_trials=len(columns) if pbo is not None else 0,
        pbo_oos_loss=oos_loss,
        sharpe_path=sharpe_path,
        cagr_path=cagr_path,
        notes=tuple(notes),
    )


def figures_of(o: Overfitting, holdout: Holdout) -> tuple[Figure, ...]:
    """The headline overfitting figures, each with one plain sentence."""
    figures: list[Figure] = []
    b = o.best_iteration
    if o.dsr is not None:
        verdict = "is likely more than luck" if o.dsr >= DSR_BAR else "could well be luck"
        figures.append(
            Figure(
                "dsr",
                "Deflated Sharpe Ratio",
                num(o.dsr),
                f"Probability that iteration {b}'s validation Sharpe of {num(o.sharpe)} beats the "
                f"{num(o.expected_max_sharpe)} that the best of {o.n_trials} skill-less strategies would reach by "
                "luck "
                f"(Sharpe variance across trials {num(o.trials_sharpe_var, 3)}); "
                f"at {num(o.dsr)} the result {verdict} ({DSR_BAR:g} is the usual bar). "
                f"{TrialCount(o.n_trials, o.n_ok_trials).how}: failures that ran were trials too; counting only the "
                f"ok ones would give {num(o.dsr_ok_only)}.",
            )
        )
    if o.psr is not None:
        figures.append(
            Figure(
                "psr",
                "Probabilistic Sharpe Ratio (vs 0)",
                num(o.psr),
                f"Probability that iteration {b}'s true Sharpe is above zero, judged from {o.n_obs} daily validation "
                f"returns (skew {num(o.skew)}, kurtosis {num(o.kurtosis, 1)}) as if it were the only strategy tried.",
            )
        )
    if o.pbo is not None:
        figures.append(
            Figure(
                "pbo",
                "Probability of backtest overfitting",
                f"{o.pbo:.0%}",
                f"Across 12,870 ways of splitting the {o.pbo_trials} ok trials' train+validation days into two halves, "
                f"the best strategy of one half ranked in the bottom half of the other {o.pbo:.0%} of the time "
                "(50% is no better than picking at random)"
                + ("." if o.pbo_oos_loss is None else f"; it lost money there in {o.pbo_oos_loss:.0%} of the splits."),
            )
        )
    if o.sharpe_path is not None:
        path = o.sharpe_path
        test = "not evaluated" if path.test is None else num(path.test)
        change = "" if path.test_minus_val is None else f"; {num(path.test_minus_val)} from validation to test"
        figures.append(
            Figure(
                "sharpe_path",
                "Sharpe train → validation → test",
                f"{num(path.train)} → {num(path.val)} → {test}",
                f"Annualised Sharpe of iteration {b} in each window: {num(path.val_minus_train)} from train to "
                f"validation{change}; "
                "a fall on the untouched test window is the part of the validation score that was selection luck.",
            )
        )
    first = holdout.first
    if first is not None:
        figures.append(
            Figure(
                "holdout",
                "Held-out test first revealed",
                first.at,
                f"The test window was first evaluated at {first.at} "
                f"(iterations {', '.join(map(str, first.iterations))}) and has been looked at {len(holdout.reveals)} "
                "time(s); every look after the first is less of a surprise test.",
            )
        )
    return tuple(figures)


def research_data(
    run: RunDir, config: Mapping[str, Any], settings: RunSettings, state: RunState, data_dir: Path | None = None
) -> tuple[PreparedData, Anonymization | None, PreparedData]:
    """The run's real data (checked against its record), its anonymisation (None when off), and the data as the run
    saw it (what its strategies are evaluated on; the real dates are what a report shows)."""
    real = load_run_data(run, config, data_dir)
    view = anonymization(settings, state, real)
    return real, view, view.apply(real) if view is not None else real


def reevaluate(
    blocks: Mapping[int, str | None],
    ok: Sequence[int],
    keep: Sequence[int],
    data: PreparedData,
    settings: EvalSettings,
    pool: SandboxPool,
    max_trials: int,
    notes: list[str],
) -> dict[int, Evaluation]:
    """Per-bar curves on train and validation of at most `max_trials` ok iterations (`keep` among them); a note for
    each that no longer evaluates ok. They passed the look-ahead gate already, so it is not run again.

    One series: a set's first asset on its prepared split (no folds), so the statistics read one return stream."""
    quick = replace(settings, lookahead=False, folds=None)
    research: dict[int, Evaluation] = {}
    for i in _select_trials(ok, keep, max_trials):
        evaluation = evaluate_block(str(blocks[i]), data.assets[0], RESEARCH_WINDOWS, quick, pool)
        if evaluation.ok:
            research[i] = evaluation
        else:
            notes.append(f"iteration {i} did not re-evaluate ok ({evaluation.status}: {evaluation.message[:120]})")
    return research


def _select_trials(ok: Sequence[int], keep: Sequence[int], limit: int) -> list[int]:
    """At most `limit` ok iterations: all when few, else evenly spaced plus the ones to keep (population)."""
    if len(ok) <= limit:
        return list(ok)
    picks = set(keep) & set(ok)
    spaced = np.linspace(0, len(ok) - 1, max(limit - len(picks), 0)).round().astype(int)
    picks |= {ok[k] for k in spaced}
    return sorted(picks)


def build_report(
    run: RunDir,
    *,
    data_dir: Path | None = None,
    holdout: bool = True,
    max_trials: int = MAX_TRIALS,
    at: str | None = None,
    reveal_running: bool = False,
) -> Report:
    """Compute the report of a run; with `holdout` the population is evaluated on the test window and the look recorded.

    A run that is still running keeps its test window sealed unless `reveal_running`: its population may still
    change, and a look spent on it now would be the first look of a population that no longer exists.
    """
    from autotrade.research.config import RunSettings

    run.check()
    config = run.read_config()
    settings = RunSettings.from_dict(config["settings"])
    state, attempts = _committed(run)
    real, view, data = research_data(run, config, settings, state, data_dir)  # evaluated as the run saw it
    evaluation_settings: EvalSettings = eval_settings(settings, state)
    research_index = data.research_frame().index
    ppy = periods_per_year(research_index)

    blocks = {a.iteration: evaluated_block(run, a) for a in attempts}
    ok = [a.iteration for a in attempts if a.ok and blocks.get(a.iteration)]
    population = tuple(int(m["iteration"]) for m in state.population)
    best = state.best_iteration
    notes: list[str] = []

    # The statistics read one series: the first asset's prepared split, even when the objective aggregated parts.
    if len(data.assets) > 1 or settings.folds > 1:
        parts = f"{len(data.assets)} asset(s) × {settings.folds} fold(s)"
        notes.append(
            f"the objective aggregated {parts} ({settings.across}); the overfitting statistics and curves below read "
            f"{data.assets[0].name}'s train/validation split alone"
        )
    with SandboxPool() as pool:  # one fork server for every evaluation of the report
        research = reevaluate(blocks, ok, population, data, evaluation_settings, pool, max_trials, notes)

        withheld = ""
        if holdout and run.is_active() and not reveal_running:
            withheld = (
                f"Run {run.name} is still running, so its population may still change: the test window was not "
                f"evaluated. Report it once it stops, or now with `autotrade report {run.name} --reveal-running`."
            )
        if holdout and not withheld:
            seen = reveal_holdout(
                run,
                [i for i in population if blocks.get(i)],
                {i: str(b) for i, b in blocks.items() if b},
                data,
                evaluation_settings,
                at=at,
                real_test_start=real.splits.test_start,
                pool=pool,
            )
        else:
            seen = Holdout(
                reveals=read_reveals(run),
                buy_and_hold=buy_and_hold_windows(data, evaluation_settings, RESEARCH_WINDOWS),
                withheld=withheld,
            )

    rows = tuple(
        Row(
            iteration=a.iteration,
            parent=a.parent,
            status=a.status.value,
            error_type=a.error_type,
            message=" ".join(a.message.split()),
            train=_window(a, "train"),
            val=_window(a, "val"),
            objective=_float(a.objective),
            rank=population.index(a.iteration) + 1 if a.iteration in population else None,
            suspicious=a.suspicious,
        )
        for a in attempts
    )
    overfitting = overfitting_of(attempts, best, research, seen, ppy, count_trials(attempts, blocks))
    positions = {
        i: np.concatenate([e.curves[w].position.to_numpy() for w in RESEARCH_WINDOWS]) for i, e in research.items()
    }
    diversity = measure_diversity(blocks, ok, population, positions)
    # A run that never nudged (--collapse-window 0, or older) is read with today's window: its collapses still show.
    collapses = collapse_episodes(attempts, blocks, settings.collapse_window or RunSettings().collapse_window)

    windows = SPLIT_WINDOWS if seen.looked else RESEARCH_WINDOWS
    cash = evaluation_settings.backtest.cash
    members: dict[int, pd.Series] = {}
    for i in population:
        source = seen.evaluations.get(i) if seen.looked else research.get(i)
        # A set's test evaluation has a part per asset: the plot shows the first, as its buy-and-hold does.
        chosen = source.part_views()[0][1].curves if source is not None else {}
        if source is not None and source.ok and all(w in chosen for w in windows):
            members[i] = chain_windows([chosen[w].equity for w in windows], cash)
    buy_and_hold = chain_windows([seen.buy_and_hold[w].equity for w in windows], cash)
    if view is not None:
        members = {i: curve.set_axis(view.real_index(curve.index)) for i, curve in members.items()}
        buy_and_hold = buy_and_hold.set_axis(view.real_index(buy_and_hold.index))
    curves = Curves(
        members=members,
        buy_and_hold=buy_and_hold,
        val_start=real.splits.val_start,
        test_start=real.splits.test_start if seen.looked else None,
    )
    frame = real.frame
    return Report(
        name=run.name,
        path=run.path,
        generated_at=at or now_iso(),
        created_at=str(config.get("created_at") or ""),
        model=str((config.get("model") or {}).get("model") or "—"),
        endpoint=endpoint_host(config),
        policy=run_policy(config),
        objective=settings.objective,
        fill=settings.fill,
        cost_bps=settings.cost_bps,
        data={
            "ticker": (config.get("data") or {}).get("ticker"),
            "sha256": real.meta.get("sha256"),
            "first": str(frame.index[0].date()),
            "last": str(frame.index[-1].date()),
            "val_start": str(real.splits.val_start.date()),
            "test_start": str(real.splits.test_start.date()),
            "anonymized": view is not None,
        },
        state=str(run.status()),
        stop_reason=state.stop_reason,
        max_iter=settings.max_iter,
        rows=rows,
        population=population,
        best_iteration=best,
        holdout=seen,
        overfitting=overfitting,
        figures=figures_of(overfitting, seen),
        taxonomy=failure_taxonomy(attempts),
        diversity=diversity,
        collapses=collapses,
        spend=spend_of(attempts, run.read_journal(), state, run.is_active(), run_policy(config)),
        curves=curves,
        notes=tuple(notes),
        assets=tuple(asset.name for asset in data.assets),
        held_out_asset=data.held_out.name if data.held_out is not None else None,
    )


def summary(report: Report) -> dict[str, Any]:
    """The report's headline figures as flat key → value (numbers unformatted): printed as `key: value`, kept in
    report.json."""
    o, t, d, s = report.overfitting, report.taxonomy, report.diversity, report.spend
    best = report.rows[report.best_iteration] if report.best_iteration is not None else None
    first = report.holdout.first
    test = report.holdout.evaluations.get(report.best_iteration) if report.best_iteration is not None else None
    test_metrics = test.windows.get("test") if test is not None and test.ok else None
    bh = report.holdout.buy_and_hold
    top_error = t.by_error[0] if t.by_error else None
    return {
        "run": report.name,
        "policy": report.policy,
        "model": report.model,
        "endpoint": report.endpoint,
        "state": report.state,
        "iterations": report.iterations,
        "ok": report.ok,
        "ok_share": report.ok / report.iterations if report.iterations else None,
        "best_iteration": report.best_iteration,
        "best_train_return": best.train.get("total_return") if best else None,
        "best_val_return": best.val.get("total_return") if best else None,
        "best_val_sharpe": best.val.get("sharpe") if best else None,
        "best_test_return": None if test_metrics is None else float(test_metrics["total_return"]),
        "best_test_sharpe": None if test_metrics is None else float(test_metrics["sharpe"]),
        "buy_and_hold_val_return": float(bh["val"].metrics["total_return"]) if "val" in bh else None,
        "buy_and_hold_test_return": float(bh["test"].metrics["total_return"]) if "test" in bh else None,
        "holdout_first_revealed_at": first.at if first else None,
        "holdout_first_iterations": ",".join(map(str, first.iterations)) if first else None,
        "holdout_looks": len(report.holdout.reveals),
        "dsr": o.dsr,
        "psr": o.psr,
        "n_trials": o.n_trials,
        "n_ok_trials": o.n_ok_trials,
        "dsr_ok_only": o.dsr_ok_only,
        "skew": o.skew,
        "kurtosis": o.kurtosis,
        "pbo": o.pbo,
        "pbo_trials": o.pbo_trials,
        "failures": t.failures,
        "failure_share": t.failures / t.iterations if t.iterations else None,
        "top_failure": f"{top_error.label} {top_error.share:.0%}" if top_error else None,
        "structure_twins": t.structure_twins,
        "position_twins": t.position_twins,
        "duplicate_saved_s": t.saved_s,
        "distinct_strategies": d.distinct,
        "candidates": d.candidates,
        "repeat_share": d.repeat_share,
        "population_position_correlation": d.mean_correlation,
        "diversity_collapsed": d.collapsed,
        "search_collapses": len(report.collapses),
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "interrupted_calls": s.interrupted_calls,
        "repaired": s.repaired,
        "repair_calls": s.repair_calls,
        "repair_tokens": s.repair_tokens,
        "model_s": s.model_s,
        "eval_s": s.eval_s,
        "wall_s": s.wall_s,
    }


# -- runs and compare: cheap summaries ---------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One run's figures from its files alone (nothing re-evaluated): a row of `runs`, a column of `compare`."""

    name: str
    created_at: str
    model: str
    endpoint: str
    policy: str
    objective: str
    state: str
    stop_reason: str | None
    data_sha256: str | None
    iterations: int
    ok: int
    best_iteration: int | None
    best_val_return: float | None
    best_val_sharpe: float | None
    best_objective: float | None
    test_return: float | None  # the best iteration's, from the latest look that evaluated it
    test_revealed_at: str | None  # the first look
    top_failure: str | None
    distinct_strategies: int
    prompt_tokens: int
    completion_tokens: int
    model_s: float
    eval_s: float
    wall_s: float
    problem: str | None = None  # why the run could not be read, when it could not

    @property
    def ok_share(self) -> float | None:
        """ok iterations / iterations."""
        return self.ok / self.iterations if self.iterations else None


def summarize_run(run: RunDir) -> RunSummary:
    """A run's summary from config.json, state.json, its records, journal, holdout.json and report.json."""
    try:
        config = run.read_config()
        state, attempts = _committed(run)
        reveals: tuple[Reveal, ...] = read_reveals(run)
        journal, status = run.read_journal(), run.status()
    except AutotradeError as exc:
        return _damaged(run, str(exc))
    best = state.best_iteration
    best_attempt = attempts[best] if best is not None and best < len(attempts) else None
    test_return = next((r.test_return(best) for r in reversed(reveals) if best is not None and best in r.test), None)
    taxonomy = failure_taxonomy(attempts)
    blocks = {a.iteration: evaluated_block(run, a) for a in attempts}
    ok = [a.iteration for a in attempts if a.ok]
    diversity = measure_diversity(blocks, ok, [], {})
    spend = spend_of(attempts, journal, state, run.is_active(), run_policy(config))
    top = taxonomy.by_error[0] if taxonomy.by_error else None
    return RunSummary(
        name=run.name,
        created_at=str(config.get("created_at") or ""),
        model=str((config.get("model") or {}).get("model") or "—"),
        endpoint=endpoint_host(config),
        policy=run_policy(config),
        objective=str((config.get("settings") or {}).get("objective") or "val_return"),
        state=str(status),
        stop_reason=state.stop_reason,
        data_sha256=(config.get("data") or {}).get("sha256"),
        iterations=len(attempts),
        ok=len(ok),
        best_iteration=best,
        best_val_return=_float(best_attempt.val_return) if best_attempt else None,
        best_val_sharpe=_window(best_attempt, "val").get("sharpe") if best_attempt else None,
        best_objective=_float(best_attempt.objective) if best_attempt else None,
        test_return=test_return,
        test_revealed_at=reveals[0].at if reveals else None,
        top_failure=f"{top.label} {top.share:.0%}" if top else None,
        distinct_strategies=diversity.distinct,
        prompt_tokens=spend.prompt_tokens,
        completion_tokens=spend.completion_tokens,
        model_s=spend.model_s,
        eval_s=spend.eval_s,
        wall_s=spend.wall_s,
    )


def _damaged(run: RunDir, problem: str) -> RunSummary:
    """The summary of a run whose files cannot be read."""
    return RunSummary(
        name=run.name,
        created_at="",
        model="—",
        endpoint="—",
        policy="—",
        objective="—",
        state="damaged",
        stop_reason=None,
        data_sha256=None,
        iterations=0,
        ok=0,
        best_iteration=None,
        best_val_return=None,
        best_val_sharpe=None,
        best_objective=None,
        test_return=None,
        test_revealed_at=None,
        top_failure=None,
        distinct_strategies=0,
        prompt_tokens=0,
        completion_tokens=0,
        model_s=0.0,
        eval_s=0.0,
        wall_s=0.0,
        problem=problem,
    )
