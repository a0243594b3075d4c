"""A reporter for tests of the loop: it keeps everything the loop told it, in order.

The CLI's reporters are presentation (tests/test_cli_research.py); the loop's own tests check what it reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autotrade.propose.client import EndpointWait
from autotrade.research.attempt import Attempt
from autotrade.research.config import RunSettings
from autotrade.research.loop import RunResult, Standing
from autotrade.research.rundir import RunDir


class RecordingReporter:
    """Implements the loop's Reporter protocol by remembering each call."""

    def __init__(self) -> None:
        self.models: list[dict[str, Any]] = []  # the endpoint each session began with
        self.phases: list[tuple[int, str]] = []
        self.attempts: list[Attempt] = []
        self.notes: list[str] = []
        self.waits: list[EndpointWait] = []
        self.results: list[RunResult] = []

    def begin(self, run: RunDir, settings: RunSettings, model: Mapping[str, Any], standing: Standing) -> None:
        self.models.append(dict(model))

    def phase(self, iteration: int, text: str) -> None:
        self.phases.append((iteration, text))

    def iteration(self, attempt: Attempt, standing: Standing) -> None:
        self.attempts.append(attempt)

    def note(self, line: str) -> None:
        self.notes.append(line)

    def waiting(self, wait: EndpointWait) -> None:
        self.waits.append(wait)

    def end(self, result: RunResult) -> None:
        self.results.append(result)
