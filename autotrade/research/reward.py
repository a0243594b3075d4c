"""A reward for a model's raw reply: parse it as the loop does, then score its code (``evaluation.score``).

The research stage composes the two because evaluation never reads replies and proposing never scores; this is
what a policy model being trained is rewarded with.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.prepared import PreparedData
from autotrade.data.windows import RESEARCH_WINDOWS
from autotrade.errors import ReplyError
from autotrade.evaluation.evaluate import EvalSettings, Evaluation, evaluate_block
from autotrade.evaluation.novelty import block_structure, position_twin, validation_positions
from autotrade.evaluation.objectives import DEFAULT_ROBUST_K
from autotrade.evaluation.score import DEFAULT_SCORE_OBJECTIVE, Score, score_code, score_evaluation
from autotrade.propose.reply import parse_reply
from autotrade.sandbox.pool import SandboxPool
from autotrade.status import Status

COPY_MESSAGE = (
    "repeats its parent, the strategy it was asked to improve: the same strategy up to names, comments, line order "
    "and argument style (not run); propose a different idea"
)
MOVES_WITH_PARENT = (
    "moves with its parent, the strategy it was asked to improve: its validation positions correlate {:.3f} with "
    "the parent's, so it is the same strategy written differently; propose a different idea"
)


def parent_positions(
    parent_block: str, data: PreparedData, settings: EvalSettings | None = None, pool: SandboxPool | None = None
) -> np.ndarray | None:
    """The validation positions of the strategy a reply was asked to improve, for ``score_reply``; None when it does
    not pass (then no reply can move with it and pass)."""
    evaluation = evaluate_block(parent_block, data, RESEARCH_WINDOWS, settings, pool)
    return validation_positions(evaluation) if evaluation.ok else None


def score_reply(
    text: str,
    data: PreparedData,
    *,
    objective: str = DEFAULT_SCORE_OBJECTIVE,
    settings: EvalSettings | None = None,
    robust_k: int = DEFAULT_ROBUST_K,
    parent_block: str | None = None,
    finish_reason: str | None = None,
    pool: SandboxPool | None = None,
    refuse_copies: bool = False,
    parent_positions: np.ndarray | None = None,
) -> Score:
    """Score a model's reply as the loop would: parse (functions it omits come from ``parent_block``, default the
    baseline), then ``score_code``; a reply with no usable code fails the valid_code gate.

    `refuse_copies`: a reply whose code is its parent's up to cosmetics (``novelty.block_structure``) is a
    ``duplicate``, unrun, as the loop refuses an ok attempt's twin; otherwise it would earn the parent's score. So is
    an ok reply whose validation positions move with `parent_positions` (``parent_positions()``; the loop's
    ``novelty.TWIN_CORRELATION``): one line that computes nothing, added to the parent, changes its structure only."""
    parent = parent_block if parent_block is not None else extract_block(baseline_source())
    try:
        parsed = parse_reply(text, parent, finish_reason)
    except ReplyError as exc:
        return score_evaluation(Evaluation(Status(exc.status), str(exc)), objective, robust_k=robust_k)
    if (
        refuse_copies
        and (structure := block_structure(parsed.block)) is not None
        and structure == block_structure(parent)
    ):
        return score_evaluation(Evaluation(Status.DUPLICATE, COPY_MESSAGE), objective, robust_k=robust_k)

    def judge(evaluation: Evaluation) -> Evaluation:
        if not (refuse_copies and parent_positions is not None and evaluation.ok):
            return evaluation
        twin = position_twin(validation_positions(evaluation), {0: parent_positions})
        if twin is None:
            return evaluation
        return replace(evaluation, status=Status.DUPLICATE, message=MOVES_WITH_PARENT.format(twin[1]))

    return score_code(
        parsed.block, data, objective=objective, settings=settings, robust_k=robust_k, pool=pool, judge=judge
    )
