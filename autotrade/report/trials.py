"""How many trials the validation window chose among: the Deflated Sharpe Ratio's N.

Every distinct strategy whose code ran counts, the failures that ran included (a runtime error or a look-ahead
was still a strategy tried on the data); a reply without code, a block that vetting refused or that does not
compile, and a twin reused without running add nothing (a position twin ran: it counts). Two attempts are one
trial when their blocks are the same program up to cosmetics, the loop's own test for twins
(`novelty.block_structure`: names, comments, layout, line order and argument style do not count), while a change
of parameters is a new trial (searching parameters is what the deflation is for).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autotrade.evaluation.novelty import block_structure
from autotrade.research.attempt import Attempt
from autotrade.status import Status


@dataclass(frozen=True)
class TrialCount:
    """Distinct strategies that ran (the honest N) and, of them, those that were ok (N counting ok ones only)."""

    ran: int
    ok: int

    @property
    def how(self) -> str:
        """How N was counted, in words."""
        return f"N = {self.ran} distinct strategies that ran, of which {self.ok} ok"


def _program(block: str) -> str:
    """What makes two blocks the same program: their structure with its numbers (the text when it does not parse)."""
    return block_structure(block) or block


def count_trials(attempts: Sequence[Attempt], blocks: Mapping[int, str | None]) -> TrialCount:
    """The trials among `attempts`, each iteration's block from `blocks` (the record's, or its trade.py's)."""
    ran: set[str] = set()
    ok: set[str] = set()
    for attempt in attempts:
        block = blocks.get(attempt.iteration) or attempt.block
        # A position twin is a duplicate whose code ran (it has a run time): the validation window chose among it.
        ran_as_twin = attempt.status is Status.DUPLICATE and "run_s" in attempt.timings
        if not (attempt.status.ran or ran_as_twin) or not block:
            continue
        program = _program(block)
        ran.add(program)
        if attempt.ok:
            ok.add(program)
    return TrialCount(ran=len(ran), ok=len(ok))
