"""How `run` and `resume` show a wait for the endpoint: a countdown in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

from legacy_run import fixture_records
from rich.console import Console

from autotrade.cli.research import PlainReporter, RichReporter, iteration_line
from autotrade.propose.client import EndpointWait
from autotrade.research.attempt import Attempt
from autotrade.research.config import RunSettings
from autotrade.research.loop import Standing

STANDING = Standing(
    done=3, max_iter=10, best_iteration=0, best_score=0.1, fail_streak=0, max_fails=5, tokens=0, elapsed_s=0.0
)
REFUSED = EndpointWait(problem="connection refused", tries=2, retry_in_s=4.0, patience_left_s=1790.0)


def bar_line(reporter: RichReporter) -> str:
    """The live display's line, as text."""
    assert reporter.progress is not None
    console = Console(record=True, width=250, file=io.StringIO())
    console.print(reporter.progress.make_tasks_table(reporter.progress.tasks))
    return " ".join(console.export_text().split())


def test_on_a_terminal_a_wait_counts_down_in_the_progress_line_until_the_next_phase() -> None:
    reporter = RichReporter(Console(file=io.StringIO(), force_terminal=True, width=250))
    reporter.begin(
        SimpleNamespace(name="r", path=Path("train/r")), RunSettings(), {"model": "m", "base_url": "u"}, STANDING
    )
    try:
        reporter.phase(3, "asking the model")
        reporter.waiting(REFUSED)
        line = bar_line(reporter)
        assert "iter 3: asking the model · endpoint: connection refused (try 2)" in line
        assert re.search(r"next try in [34] s · gives up in 0:29:(50|4\d)", line), line  # less the time this test took
        reporter.phase(3, "evaluating")
        assert "endpoint" not in bar_line(reporter) and "gives up" not in bar_line(reporter)
    finally:
        assert reporter.progress is not None
        reporter.progress.stop()


def test_off_a_terminal_an_outage_gives_a_line_when_it_starts_or_changes_not_one_per_retry() -> None:
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter.waiting(REFUSED)
    reporter.waiting(EndpointWait("connection refused", 3, 8.0, 1780.0))
    reporter.waiting(EndpointWait("HTTP 503: Loading model", 4, 16.0, 1770.0))
    assert out.getvalue().splitlines() == [
        "endpoint: connection refused (try 2); next try in 4s, giving up in 0:29:50",
        "endpoint: HTTP 503: Loading model (try 4); next try in 16s, giving up in 0:29:30",
    ]


def test_the_iteration_line_of_a_failed_attempt_says_why_and_of_an_ok_one_does_not() -> None:
    ok, crashed = (Attempt.from_json(fixture_records()[i]) for i in (2, 5))
    failed = iteration_line(crashed, STANDING, "val_return")
    assert failed.startswith("iter 5/9 status=runtime_error parent=0 train_return=— val_return=— fails=0/5")
    assert " why=KeyError: 'Nope' (line 2, in generate_features)" in failed
    assert "why=" not in iteration_line(ok, STANDING, "val_return")
