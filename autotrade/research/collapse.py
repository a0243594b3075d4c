"""When the search has collapsed: the last ok attempts all share one structure family, so the next prompt says so.

An attempt's structure family is the set of indicator families its block uses (`evaluation.families`), recorded
with it (`Attempt.families`): a resumed run sees the families the run saw, even after the tagging improves.
The original experiment's model copied the prompt's example 96% of the time; this rule names the rut and asks
for a strategy from a family not yet tried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autotrade.evaluation.families import FAMILIES
from autotrade.research.attempt import Attempt


@dataclass(frozen=True)
class Collapse:
    """The search stuck in one structure family: which, over how many ok attempts, and the families to suggest."""

    families: tuple[str, ...]  # the structure family the last `window` ok attempts share, as recorded
    window: int
    others: tuple[str, ...]  # families no attempt has used yet (else all outside `families`), in FAMILIES order


def collapse_of(attempts: Sequence[Attempt], window: int) -> Collapse | None:
    """The collapse the attempts end in: their last `window` ok ones (failures in between do not count) all in one
    structure family; None when window is 0, fewer are ok, or one of them has no known or no recognised family."""
    if window < 1:
        return None
    recent = [a.families for a in attempts if a.ok][-window:]
    if len(recent) < window or not recent[0] or any(f is None or set(f) != set(recent[0]) for f in recent):
        return None
    shared = set(recent[0])
    tried = {f for a in attempts for f in a.families or ()}
    others = tuple(f for f in FAMILIES if f not in tried) or tuple(f for f in FAMILIES if f not in shared)
    return Collapse(tuple(recent[0]), window, others)
