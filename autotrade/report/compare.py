"""Runs on equal footing: each cut at the same number of iterations, tokens or minutes, then measured alike.

A run that went on longer has had more chances to find something by luck, so `compare` looks at each run as it
stood at the cut: its best within the cut (the population its last counted iteration committed), that best's DSR
and PBO from the report's own statistics over the counted iterations only, and what the model's replies cost and
how they read. A cut by tokens counts the prompt and completion tokens of the committed iterations (as the records
hold them, and as --budget-tokens does); a cut by minutes uses the research time each commit's journal line holds,
which runs written before it was recorded lack (they can be cut by iterations or tokens). The held-out test window
is never looked at here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotrade.engine.metrics import periods_per_year
from autotrade.errors import AutotradeError, ConfigError
from autotrade.propose.client import estimate_tokens
from autotrade.report.compute import (
    MAX_TRIALS,
    Overfitting,
    endpoint_host,
    evaluated_block,
    overfitting_of,
    reevaluate,
    research_data,
    run_policy,
)
from autotrade.report.holdout import Holdout
from autotrade.report.trials import TrialCount, count_trials
from autotrade.research.attempt import Attempt
from autotrade.research.config import RunSettings
from autotrade.research.rundir import EVALUATION_SETTINGS, RunDir, eval_settings
from autotrade.sandbox.pool import SandboxPool


@dataclass(frozen=True)
class Footing:
    """Where every run is cut: its first `iterations` (the baseline included, as --max-iter counts), or the
    iterations it completed within `tokens` or `minutes` of research; all None: every committed iteration."""

    iterations: int | None = None
    tokens: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        """One footing at a time (two would cut each run twice), and one that counts something."""
        given = {k: v for k, v in vars(self).items() if v is not None}
        if len(given) > 1:
            raise ConfigError(
                f"{' and '.join(f'--{k}' for k in given)}: choose one footing (iterations, tokens or minutes)"
            )
        for key, value in given.items():
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"--{key} {value}: must be a positive number")

    @property
    def text(self) -> str:
        """The footing in words."""
        if self.iterations is not None:
            return f"the first {self.iterations} iterations"
        if self.tokens is not None:
            return f"the iterations completed within {self.tokens:,} tokens"
        if self.minutes is not None:
            return f"the iterations completed within {self.minutes:g} minutes of research"
        return "every committed iteration"


@dataclass(frozen=True)
class Leg:
    """One run cut at the footing: a column of the equal-footing table."""

    name: str
    model: str
    endpoint: str
    policy: str
    objective: str
    committed: int  # iterations the run committed in all
    counted: int  # of them, within the footing
    best_iteration: int | None = None  # the best within the footing
    best_objective: float | None = None
    overfitting: Overfitting | None = None  # over the counted iterations; None when they could not be re-evaluated
    trials: TrialCount = TrialCount(0, 0)
    turns: int = 0  # model replies, repair turns included
    parse_failures: int = 0  # replies that held no usable code
    needed_repair: int = 0  # iterations that got at least one repair turn
    repaired: int = 0  # of them, ok in the end
    reasoning_chars: int = 0
    tokens: int = 0  # prompt + completion
    ok_proposals: int = 0  # ok iterations the proposer wrote (the baseline is nobody's)
    usage_estimated: bool = False
    notes: tuple[str, ...] = ()
    problem: str | None = None  # why the run could not be cut or read

    @property
    def reasoning_tokens(self) -> int:
        """The thinking, in tokens estimated from its characters (records keep characters; servers differ on
        whether they count reasoning tokens apart)."""
        return estimate_tokens(self.reasoning_chars)


def research_times(journal: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Each committed iteration's research time at its commit (seconds), from the journal lines that hold it."""
    return {
        e["iteration"]: float(e["wall_s"])
        for e in journal
        if e.get("event") == "iteration_committed" and isinstance(e.get("wall_s"), int | float)
    }


def counted(attempts: Sequence[Attempt], footing: Footing, times: Mapping[int, float]) -> int:
    """How many of the committed `attempts` (a prefix) lie within the footing; ConfigError when the run cannot say."""
    if footing.iterations is not None:
        return min(footing.iterations, len(attempts))
    if footing.tokens is not None:
        spent = 0
        for k, attempt in enumerate(attempts):
            spent += attempt.prompt_tokens + attempt.completion_tokens
            if spent > footing.tokens:
                return k
        return len(attempts)
    if footing.minutes is not None:
        for k, attempt in enumerate(attempts):
            if attempt.iteration not in times:
                raise ConfigError(
                    f"iteration {attempt.iteration} has no research time in the journal (written before autotrade "
                    "recorded it, or on a resume after a crash): cut it by --iterations or --tokens"
                )
            if times[attempt.iteration] > footing.minutes * 60:
                return k
        return len(attempts)
    return len(attempts)


def fell_short(attempts: Sequence[Attempt], footing: Footing, times: Mapping[int, float]) -> bool:
    """True when the run stopped before it reached the footing: all of it is counted, and that is less than the
    footing allows (so beside a run that reached it, it had fewer chances)."""
    if footing.iterations is not None:
        return len(attempts) < footing.iterations
    if footing.tokens is not None:
        return sum(a.prompt_tokens + a.completion_tokens for a in attempts) < footing.tokens
    if footing.minutes is not None and attempts:
        return times.get(attempts[-1].iteration, 0.0) < footing.minutes * 60
    return False


def cut_figures(attempts: Sequence[Attempt]) -> dict[str, Any]:
    """What the counted iterations' replies cost and how they read (Leg's fields)."""
    turns = [t for a in attempts for t in a.turns]
    return {
        "turns": len(turns),
        "parse_failures": sum(t.reply_source is None for t in turns),
        "needed_repair": sum(bool(a.repair_turns) for a in attempts),
        "repaired": sum(a.repaired for a in attempts),
        "reasoning_chars": sum(t.reasoning_chars for t in turns),
        "tokens": sum(a.prompt_tokens + a.completion_tokens for a in attempts),
        "ok_proposals": sum(a.ok and bool(a.turns) for a in attempts),
        "usage_estimated": any(a.usage_estimated for a in attempts),
    }


def compare_run(
    run: RunDir, footing: Footing, pool: SandboxPool, *, data_dir: Path | None = None, max_trials: int = MAX_TRIALS
) -> Leg:
    """One run cut at `footing`, its statistics over the counted iterations (ok trials re-evaluated in `pool`)."""
    try:
        config = run.read_config()
        settings = RunSettings.from_dict(config["settings"])
        state = run.committed_state()
        attempts = run.records(state.next_iteration)
        journal = run.read_journal()
    except AutotradeError as exc:
        return Leg(run.name, "—", "—", "—", "—", 0, 0, problem=str(exc))
    who = {
        "name": run.name,
        "model": str((config.get("model") or {}).get("model") or "—"),
        "endpoint": endpoint_host(config),
        "policy": run_policy(config),
        "objective": settings.objective,
        "committed": len(attempts),
    }
    times = research_times(journal)
    try:
        cut = attempts[: counted(attempts, footing, times)]
    except ConfigError as exc:
        return Leg(**who, counted=0, problem=str(exc))
    members = cut[-1].population if cut else ()
    best = members[0] if members else None
    blocks = {a.iteration: evaluated_block(run, a) for a in cut}
    trials = count_trials(cut, blocks)
    figures = {**who, "counted": len(cut), "trials": trials, **cut_figures(cut)}
    if best is not None:
        figures |= {"best_iteration": best, "best_objective": cut[best].objective}
    notes = (
        [f"it ended short of the footing ({footing.text}): all of it is counted"]
        if fell_short(attempts, footing, times)
        else []
    )
    try:
        _, _, data = research_data(run, config, settings, state, data_dir)
    except AutotradeError as exc:
        return Leg(**figures, problem=f"no DSR or PBO: {exc}")
    ok = [a.iteration for a in cut if a.ok and blocks.get(a.iteration)]
    research = reevaluate(blocks, ok, members, data, eval_settings(settings, state), pool, max_trials, notes)
    ppy = periods_per_year(data.research_frame().index)
    overfitting = overfitting_of(cut, best, research, Holdout(reveals=()), ppy, trials)
    return Leg(**figures, overfitting=overfitting, notes=(*notes, *overfitting.notes))


def rule_differences(settings: Mapping[str, RunSettings]) -> list[str]:
    """Each evaluation rule (rundir.EVALUATION_SETTINGS) the runs, by name, do not share: 'folds: a 1, b 5'.

    Runs on the same data but judged under different rules (a worst-of-folds objective beside one window's, other
    costs) are no equal footing: their bests measure different things."""
    return [
        f"{key}: " + ", ".join(f"{name} {getattr(one, key)}" for name, one in settings.items())
        for key in EVALUATION_SETTINGS
        if len({getattr(one, key) for one in settings.values()}) > 1
    ]


def settings_of(run: RunDir) -> RunSettings | None:
    """The run's settings; None when its config cannot be read (compare notes that problem on its own)."""
    try:
        return RunSettings.from_dict(run.read_config()["settings"])
    except AutotradeError:
        return None


def compare_runs(
    runs: Sequence[RunDir], footing: Footing, *, data_dir: Path | None = None, max_trials: int = MAX_TRIALS
) -> list[Leg]:
    """Every run cut at the same footing, in the order given."""
    with SandboxPool() as pool:  # one fork server for every re-evaluation
        return [compare_run(run, footing, pool, data_dir=data_dir, max_trials=max_trials) for run in runs]
