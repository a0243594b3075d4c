"""Statuses: one table says what each means to the objectives, the report and the sandbox."""

from __future__ import annotations

import pytest

from autotrade.evaluation.objectives.rubric import rubric_score
from autotrade.sandbox.pool import STATUSES
from autotrade.status import Status


def test_every_status_has_a_label_for_the_report() -> None:
    assert all(status.label for status in Status)


@pytest.mark.parametrize("status", list(Status))
def test_the_rubric_gate_on_valid_code_follows_the_status_table(status: Status) -> None:
    assert rubric_score({"num_trades": 3.0, "final_equity": 1.0}, status).gates["valid_code"] is not status.invalid_code


def test_a_worker_child_may_report_only_the_statuses_of_running_code() -> None:
    assert STATUSES == {"ok", "syntax_error", "runtime_error", "timeout", "memory", "bad_signal", "lookahead"}
