"""model: the language model behind an OpenAI-compatible endpoint (or replicas of it) proposes each candidate."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from autotrade.errors import EndpointError
from autotrade.propose.client import EndpointWait, ModelClient, ModelSettings, display_url, endpoint_urls
from autotrade.propose.policies.base import Proposal, ProposalRequest
from autotrade.propose.prompts import messages


class ModelProposer:
    """The model at one endpoint or several (comma-separated base URLs); safe to call from several threads.

    Each request goes to the alive endpoint with the fewest requests in flight, so K parallel proposals spread over
    the replicas. While another endpoint is alive, one where nothing listens is skipped for the rest of the session
    (one line through `on_note`) and the request goes to another; the last one left waits out its patience, as a
    single endpoint does. Every request has a client of its own: abandoning one at its deadline closes only its
    connection.
    """

    def __init__(
        self,
        settings: ModelSettings,
        on_wait: Callable[[EndpointWait], None] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_wait = on_wait
        self.on_note = on_note
        self.endpoints = [replace(settings, base_url=url) for url in endpoint_urls(settings.base_url)]
        self._lock = threading.Lock()
        self._busy = [0] * len(self.endpoints)
        self._dead: set[int] = set()
        self._idle: list[list[ModelClient]] = [[] for _ in self.endpoints]
        self._open: set[ModelClient] = set()
        self._closed = False

    def propose(self, request: ProposalRequest) -> Proposal:
        """Send the conversation (the prompt, then any repair turns); EndpointError when no endpoint can answer."""
        while True:
            index, client, others = self._take()
            try:
                completion = client.complete(messages(request.prompt, request.repairs), fail_fast=others)
            except EndpointError as exc:
                if not (others and exc.unreachable):
                    raise
                self._bury(index, str(exc))
                continue
            finally:
                self._give_back(index, client)
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

    def close(self) -> None:
        """Close every client, so requests still in flight end (the servers stop generating their replies)."""
        with self._lock:
            self._closed = True
            clients, self._open = list(self._open), set()
            self._idle = [[] for _ in self.endpoints]
        for client in clients:
            client.close()

    def _take(self) -> tuple[int, ModelClient, bool]:
        """The least busy alive endpoint, a client for it, and whether another endpoint is alive to fall back on."""
        with self._lock:
            if self._closed:
                raise EndpointError("the run is stopping: no more requests")
            alive = [i for i in range(len(self.endpoints)) if i not in self._dead]
            index = min(alive, key=lambda i: (self._busy[i], i))
            self._busy[index] += 1
            if self._idle[index]:
                client = self._idle[index].pop()
            else:
                client = ModelClient(self.endpoints[index], on_wait=self.on_wait)
                self._open.add(client)
            return index, client, len(alive) > 1

    def _give_back(self, index: int, client: ModelClient) -> None:
        with self._lock:
            self._busy[index] -= 1
            if not self._closed and client in self._open:
                self._idle[index].append(client)

    def _bury(self, index: int, why: str) -> None:
        """Skip an endpoint where nothing listens for the rest of the session; said once."""
        with self._lock:
            if index in self._dead:
                return
            self._dead.add(index)
        if self.on_note is not None:
            self.on_note(f"endpoint {display_url(self.endpoints[index].base_url)} skipped for this session: {why}")


@dataclass(frozen=True)
class ModelPolicy:
    """Proposals from the model at the endpoint, each improving a parent from the population."""

    name: str = "model"
    needs_endpoint: bool = True
    builds_on_population: bool = True
    phase: str = "asking the model"

    def proposer(
        self,
        model: ModelSettings | None,
        on_wait: Callable[[EndpointWait], None] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> ModelProposer:
        """A proposer talking to ``model``; ValueError without endpoint settings."""
        if model is None:
            raise ValueError("the model policy needs endpoint settings")
        return ModelProposer(model, on_wait, on_note)


POLICY = ModelPolicy()
