"""A reward for a model's raw reply: parse it as the loop does, then score its code (``evaluation.score``).

The research stage composes the two because evaluation never reads replies and proposing never scores; this is
what a policy model being trained is rewarded with.
"""

from __future__ import annotations

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.prepared import PreparedData
from autotrade.errors import ReplyError
from autotrade.evaluation.evaluate import EvalSettings, Evaluation
from autotrade.evaluation.novelty import block_structure
from autotrade.evaluation.objectives import DEFAULT_ROBUST_K
from autotrade.evaluation.score import DEFAULT_SCORE_OBJECTIVE, Score, score_code, score_evaluation
from autotrade.propose.reply import parse_reply
from autotrade.sandbox.pool import SandboxPool
from autotrade.status import Status

COPY_MESSAGE = (
    "repeats its parent, the strategy it was asked to improve: the same strategy up to names, comments, line order "
    "and argument style (not run); propose a different idea"
)


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
) -> Score:
    """Score a model's reply as the loop would: parse (functions it omits come from ``parent_block``, default the
    baseline), then ``score_code``; a reply with no usable code fails the valid_code gate.

    `refuse_copies`: a reply whose code is its parent's up to cosmetics (``novelty.block_structure``) is a
    ``duplicate``, unrun, as the loop refuses an ok attempt's twin; otherwise it would earn the parent's score."""
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
    return score_code(parsed.block, data, objective=objective, settings=settings, robust_k=robust_k, pool=pool)
