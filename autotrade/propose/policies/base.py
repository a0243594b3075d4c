"""What every policy meets: a proposal request, the proposal, the proposer that answers, and the policy that makes it.

Every proposal's text is a reply — one ```python block, one ```markdown hypothesis — so every proposal takes the
same path afterwards: parse → vet → splice → evaluate. A policy that draws at random draws only from
``request.rng``, a generator seeded by the run (the run's own, committed with every iteration, when proposals come one
at a time; one per iteration with --parallel), so a run is reproducible from its seed, and a resumed or redone
iteration proposes exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from autotrade.propose.client import EndpointWait, ModelSettings


@dataclass(frozen=True)
class ProposalRequest:
    """What a proposer may use for one proposal."""

    iteration: int
    parent: int
    parent_block: str  # the agent block the proposal should improve
    prompt: str  # the rendered prompt (the first user turn)
    rng: random.Random  # seeded by the run: a redone iteration draws the same
    # The conversation's later turns (--repair): each earlier reply's content and the error it met, oldest first.
    repairs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Proposal:
    """A reply and what it cost: tokens, seconds."""

    text: str
    finish_reason: str | None
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    latency_s: float = 0.0
    reasoning: str = ""
    deadline_hits: int = 0  # requests abandoned at the deadline before the one that answered
    early_stop: str | None = None  # why reading stopped once the reply was complete (finish_reason "early_stop")
    received_chars: int = 0  # characters the model sent, content and reasoning together; 0 when no model was asked


class Proposer(Protocol):
    """Answers a proposal request with a reply text."""

    def propose(self, request: ProposalRequest) -> Proposal:
        """One proposal; EndpointError when a model server cannot give one."""
        ...

    def close(self) -> None:
        """End the proposals still in flight (the run is stopping); later ones are refused."""
        ...


class Policy(Protocol):
    """Where a run's proposals come from (``--policy``)."""

    name: str  # its key in POLICIES; a policy without an endpoint is also the model its runs record
    needs_endpoint: bool  # proposals come from a model server: preflight, endpoint flags, API key, token spend
    builds_on_population: bool  # proposals improve the population, so --max-fails stops a run that stalls
    phase: str  # what the progress display says while it proposes

    def proposer(
        self,
        model: ModelSettings | None,
        on_wait: Callable[[EndpointWait], None] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> Proposer:
        """The run's proposer (``model``: endpoint settings, when the policy needs them; ``on_wait`` hears retries,
        ``on_note`` one-line notices such as an endpoint skipped). It may be called from several threads at once."""
        ...
