"""Score one candidate: hard gates, components and a total under an objective — the loop's ranking, and a reward.

``score_code(code, data)`` takes a whole trade.py or just its agent block and runs it through the one evaluation
path (``evaluation.evaluate_block``: vet → sandboxed run → look-ahead gate → backtest) on the research windows,
train and validation, only: the held-out test window is never touched. ``score_reply`` does the same for a
model's raw reply (parsed as the loop parses it), which is what a policy model being trained produces.

Gates are the rubric's hard gates (``objectives.rubric_score``): valid_code, no_lookahead, finite_equity, trades.
The total is the objective's value when every gate passes; otherwise ``GATED[objective]``: 0 for rubric (its
floor), -inf for the unbounded objectives (worse than any strategy that passed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from autotrade.candidate import baseline_source, extract_block, has_delimiters
from autotrade.data.prepared import PreparedData
from autotrade.data.windows import RESEARCH_WINDOWS
from autotrade.engine.metrics import periods_per_year
from autotrade.errors import ReplyError
from autotrade.evaluation.evaluate import (
    EvalSettings,
    Evaluation,
    Status,
    evaluate_block,
    finish_gate,
)
from autotrade.evaluation.objectives import (
    DEFAULT_ROBUST_K,
    Objective,
    concat_bar_returns,
    rubric_score,
    sub_window_sharpes,
)
from autotrade.propose.reply import parse_reply

DEFAULT_SCORE_OBJECTIVE = Objective.RUBRIC  # bounded in [0, 1]: the natural reward
GATED: Mapping[Objective, float] = {
    Objective.VAL_RETURN: -math.inf,
    Objective.VAL_SHARPE: -math.inf,
    Objective.ROBUST: -math.inf,
    Objective.RUBRIC: 0.0,
}


@dataclass(frozen=True)
class Score:
    """A candidate's score: gates (True = passed), the total's components, the total, and what the harness saw."""

    gates: dict[str, bool]
    components: dict[str, float]  # rubric: each in [0, 1] before weighting; else the figures the total is read from
    total: float  # the objective's value; GATED[objective] when a gate failed or the value is not finite
    status: str  # evaluation.Status value (or the reply's parse status)
    message: str
    windows: dict[str, dict[str, float]] = field(default_factory=dict)  # train and validation metrics; never test
    objective: str = DEFAULT_SCORE_OBJECTIVE.value

    @property
    def passed(self) -> bool:
        """True when every hard gate passed."""
        return all(self.gates.values())


def score_evaluation(
    evaluation: Evaluation,
    objective: Objective | str = DEFAULT_SCORE_OBJECTIVE,
    *,
    robust_k: int = DEFAULT_ROBUST_K,
    periods: float = 252.0,
) -> Score:
    """Score an evaluation of train and validation; ``periods`` = bars per year for annualising."""
    objective = Objective(objective)
    rubric = rubric_score(evaluation.windows.get("val", {}), str(evaluation.status))
    gates = dict(rubric.gates)
    if objective is Objective.RUBRIC:
        components = dict(rubric.components)
        total = rubric.total
    elif objective is Objective.ROBUST:
        components = _robust_components(evaluation, robust_k, periods) if evaluation.ok else {}
        total = min(components.values(), default=math.nan)
    else:
        key = "total_return" if objective is Objective.VAL_RETURN else "sharpe"
        value = evaluation.windows.get("val", {}).get(key)
        components = {} if value is None else {objective.value: float(value)}
        total = math.nan if value is None else float(value)
    if not all(gates.values()) or not evaluation.ok or not math.isfinite(total):
        total = GATED[objective]
    return Score(
        gates=gates,
        components=components,
        total=total,
        status=str(evaluation.status),
        message=evaluation.message,
        windows={name: dict(metrics) for name, metrics in evaluation.windows.items()},
        objective=objective.value,
    )


def _robust_components(evaluation: Evaluation, k: int, periods: float) -> dict[str, float]:
    """Each sub-window's annualised Sharpe (sharpe_1 … sharpe_k, in time order); empty when too few bars."""
    if not all(name in evaluation.curves for name in RESEARCH_WINDOWS):
        return {}
    returns = concat_bar_returns([evaluation.curves[name].equity.to_numpy() for name in RESEARCH_WINDOWS])
    try:
        sharpes = sub_window_sharpes(returns, k, periods)
    except ValueError:
        return {}
    return {f"sharpe_{i}": value for i, value in enumerate(sharpes, start=1)}


def score_code(
    code: str,
    data: PreparedData,
    *,
    objective: Objective | str = DEFAULT_SCORE_OBJECTIVE,
    settings: EvalSettings | None = None,
    robust_k: int = DEFAULT_ROBUST_K,
) -> Score:
    """Score a whole trade.py or an agent block on the research windows; candidate problems score, never raise."""
    block = extract_block(code) if has_delimiters(code) else code
    evaluation = finish_gate(evaluate_block(block, data, RESEARCH_WINDOWS, settings), block, data, settings)
    return score_evaluation(
        evaluation, objective, robust_k=robust_k, periods=periods_per_year(data.research_frame().index)
    )


def score_reply(
    text: str,
    data: PreparedData,
    *,
    objective: Objective | str = DEFAULT_SCORE_OBJECTIVE,
    settings: EvalSettings | None = None,
    robust_k: int = DEFAULT_ROBUST_K,
    parent_block: str | None = None,
    finish_reason: str | None = None,
) -> Score:
    """Score a model's reply as the loop would: parse (functions it omits come from ``parent_block``, default the
    baseline), then ``score_code``; a reply with no usable code fails the valid_code gate."""
    parent = parent_block if parent_block is not None else extract_block(baseline_source())
    try:
        parsed = parse_reply(text, parent, finish_reason)
    except ReplyError as exc:
        return score_evaluation(Evaluation(Status(exc.status), str(exc)), objective, robust_k=robust_k)
    return score_code(parsed.block, data, objective=objective, settings=settings, robust_k=robust_k)
