"""Duplicates: a proposal that repeats an earlier attempt's structure, or moves with a population member's positions.

Everything here reads the committed records, so resume rebuilds the same verdicts from the run directory. A
structure twin is looked for among the ok attempts only: a failure's twin would fail the same way, but its result
is not worth reusing, and refusing it would hide the failure's own message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from autotrade.evaluation.evaluate import Evaluation
from autotrade.evaluation.novelty import decode_positions, first_twins, position_twin, validation_positions
from autotrade.research.attempt import Attempt
from autotrade.status import Status

Twin = tuple[int, float | None]  # the iteration repeated, and the positions' correlation (None: by structure)


def structure_twins(attempts: Iterable[Attempt]) -> dict[str, int]:
    """Each structure's first ok iteration among `attempts` (in iteration order)."""
    return first_twins((a.iteration, a.structure) for a in attempts if a.ok)


def structure_message(twin: int, reused: bool) -> str:
    """Why a structure twin failed, as the record and the next prompt say it."""
    # Not reused: with --parallel it was proposed before its twin committed, and evaluated meanwhile.
    result = "its result is reused, not run again" if reused else "evaluated before its twin had committed"
    return (
        f"repeats iteration {twin}: the same strategy up to names, comments, line order and argument style "
        f"({result}); propose a different idea"
    )


def position_message(twin: int, value: float) -> str:
    """Why a position twin failed."""
    return (
        f"repeats iteration {twin}: its validation positions correlate {value:.3f} with iteration {twin}'s, "
        "a population member; propose a different idea"
    )


def member_positions(records: Sequence[Attempt], members: Iterable[int]) -> dict[int, np.ndarray]:
    """The population members' validation positions, best first (members recorded before positions were kept have
    none and are left out)."""
    return {m: decode_positions(p) for m in members if (p := records[m].positions) is not None}


def judge(
    evaluation: Evaluation, structure: str | None, records: Sequence[Attempt], members: Iterable[int]
) -> tuple[Evaluation, Twin | None]:
    """An ok evaluation made a duplicate when an earlier ok attempt had its structure or a population member its
    positions; anything else is returned as it is."""
    if not evaluation.ok:
        return evaluation, None
    twin = structure_twins(records).get(structure) if structure is not None else None
    if twin is not None:
        return replace(evaluation, status=Status.DUPLICATE, message=structure_message(twin, reused=False)), (twin, None)
    found = position_twin(validation_positions(evaluation), member_positions(records, members))
    if found is None:
        return evaluation, None
    return replace(evaluation, status=Status.DUPLICATE, message=position_message(*found)), found
