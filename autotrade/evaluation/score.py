"""Score one candidate: hard gates, components and a total under an objective — the loop's ranking, and a reward.

``score_code(code, data)`` takes a whole trade.py or just its agent block and runs it through the one evaluation
path (``evaluation.evaluate_block``: vet → sandboxed run → look-ahead gate → backtest) on the research windows,
train and validation, only: the held-out test window is never touched. Scoring a model's raw reply is the research
stage's (``research.reward.score_reply``): evaluation never reads replies.

Gates are the rubric's hard gates (``objectives.rubric.rubric_score``): valid_code, no_lookahead, finite_equity,
trades. The total is the objective's value when every gate passes; otherwise at most the objective's ``gated`` value:
0 for rubric (its floor), -0.7 for composite (whose invalid code scores -1), -inf for the unbounded objectives (worse
than any strategy that passed).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from autotrade.candidate import extract_block, has_delimiters
from autotrade.data.prepared import PreparedData
from autotrade.data.windows import RESEARCH_WINDOWS
from autotrade.engine.metrics import periods_per_year
from autotrade.evaluation.across import aggregate_totals
from autotrade.evaluation.evaluate import EvalSettings, Evaluation, evaluate_block, finish_gate
from autotrade.evaluation.objectives import DEFAULT_ROBUST_K, OBJECTIVES
from autotrade.evaluation.objectives.base import Measure, Objective
from autotrade.evaluation.objectives.rubric import rubric_score
from autotrade.sandbox.pool import SandboxPool

DEFAULT_SCORE_OBJECTIVE = "rubric"  # bounded in [0, 1]: the natural reward


@dataclass(frozen=True)
class Score:
    """A candidate's score: gates (True = passed), the total's components, the total, and what the harness saw."""

    gates: dict[str, bool]
    components: dict[str, float]  # rubric: each in [0, 1] before weighting; else the figures the total is read from
    total: (
        float  # the objective's value; at most its gated value when a gate failed, or it when the value is not finite
    )
    status: str  # evaluation.Status value (or the reply's parse status)
    message: str
    windows: dict[str, dict[str, float]] = field(default_factory=dict)  # train and validation metrics; never test
    objective: str = DEFAULT_SCORE_OBJECTIVE

    @property
    def passed(self) -> bool:
        """True when every hard gate passed."""
        return all(self.gates.values())


def score_evaluation(
    evaluation: Evaluation,
    objective: str = DEFAULT_SCORE_OBJECTIVE,
    *,
    robust_k: int = DEFAULT_ROBUST_K,
    periods: float = 252.0,
) -> Score:
    """Score an evaluation of train and validation under a registered objective; ``periods`` = bars per year."""
    chosen = OBJECTIVES.get(objective)
    gates = dict(rubric_score(evaluation.windows.get("val", {}), str(evaluation.status)).gates)
    measure = measure_parts(chosen, evaluation, robust_k=robust_k, periods=periods)
    total = measure.total
    if not all(gates.values()) or not evaluation.ok or not math.isfinite(total):
        total = min(total, chosen.gated) if math.isfinite(total) else chosen.gated
    return Score(
        gates=gates,
        components=measure.components,
        total=total,
        status=str(evaluation.status),
        message=evaluation.message,
        windows={name: dict(metrics) for name, metrics in evaluation.windows.items()},
        objective=objective,
    )


def measure_parts(chosen: Objective, evaluation: Evaluation, *, robust_k: int, periods: float) -> Measure:
    """The objective of an evaluation; of several parts, each part's total aggregated as `evaluation.across` says.

    The components of a multi-part measure are the part totals, by label, so a prompt or table can show which
    asset or fold set the worst case.
    """
    views = evaluation.part_views()
    if len(views) == 1:
        return chosen.measure(evaluation, robust_k=robust_k, periods=periods)
    totals = {label: chosen.measure(view, robust_k=robust_k, periods=periods).total for label, view in views}
    return Measure(totals, aggregate_totals(list(totals.values()), evaluation.across))


def score_code(
    code: str,
    data: PreparedData,
    *,
    objective: str = DEFAULT_SCORE_OBJECTIVE,
    settings: EvalSettings | None = None,
    robust_k: int = DEFAULT_ROBUST_K,
    pool: SandboxPool | None = None,
    judge: Callable[[Evaluation], Evaluation] | None = None,
) -> Score:
    """Score a whole trade.py or an agent block on the research windows; candidate problems score, never raise.

    `pool` runs the sandboxed children (a caller scoring many passes one); None: a pool for this call. `judge` may
    make the finished evaluation another before it is scored (a reply that moves with its parent: a duplicate).
    """
    block = extract_block(code) if has_delimiters(code) else code
    with contextlib.nullcontext(pool) if pool is not None else SandboxPool() as sandbox:
        evaluation = evaluate_block(block, data, RESEARCH_WINDOWS, settings, sandbox)
        evaluation = finish_gate(evaluation, block, data, settings or EvalSettings(), pool=sandbox)
    if judge is not None:
        evaluation = judge(evaluation)
    return score_evaluation(
        evaluation, objective, robust_k=robust_k, periods=periods_per_year(data.research_frame().index)
    )
