"""model: the language model behind an OpenAI-compatible endpoint proposes each candidate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from autotrade.propose.client import EndpointWait, ModelClient, ModelSettings
from autotrade.propose.policies.base import Proposal, ProposalRequest
from autotrade.propose.prompts import messages


class ModelProposer:
    """The language model behind an OpenAI-compatible endpoint; the client starts on the first proposal."""

    def __init__(self, settings: ModelSettings, on_wait: Callable[[EndpointWait], None] | None = None) -> None:
        self.settings = settings
        self.on_wait = on_wait
        self.client: ModelClient | None = None

    def propose(self, request: ProposalRequest) -> Proposal:
        """Send the prompt as one user turn; EndpointError propagates."""
        if self.client is None:
            self.client = ModelClient(self.settings, on_wait=self.on_wait)
        completion = self.client.complete(messages(request.prompt))
        return Proposal(
            text=completion.content or "",
            finish_reason=completion.finish_reason,
            model=completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            usage_estimated=completion.usage_estimated,
            latency_s=completion.latency_s,
            reasoning=completion.reasoning or "",
            deadline_hits=completion.deadline_hits,
            early_stop=completion.early_stop,
            received_chars=completion.received_chars,
        )


@dataclass(frozen=True)
class ModelPolicy:
    """Proposals from the model at the endpoint, each improving a parent from the population."""

    name: str = "model"
    needs_endpoint: bool = True
    builds_on_population: bool = True
    phase: str = "asking the model"

    def proposer(
        self, model: ModelSettings | None, on_wait: Callable[[EndpointWait], None] | None = None
    ) -> ModelProposer:
        """A proposer talking to ``model``; ValueError without endpoint settings."""
        if model is None:
            raise ValueError("the model policy needs endpoint settings")
        return ModelProposer(model, on_wait)


POLICY = ModelPolicy()
