"""The held-out test window: evaluated only by the report, every look recorded, the first shown on each later report."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_report import MIXED, copy_run, make_run

from autotrade.data.prepared import load_prepared
from autotrade.engine.backtest import BacktestSettings, Fill
from autotrade.errors import ConfigError
from autotrade.evaluation.evaluate import EvalSettings, evaluate_block
from autotrade.report.compute import build_report, summary
from autotrade.report.holdout import HOLDOUT_FILE, read_reveals
from autotrade.report.render import holdout_section
from autotrade.research.rundir import RunDir
from autotrade.sandbox.pool import SandboxPool

FIRST = "2030-01-01T00:00:00+00:00"
LATER = "2030-02-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A work folder holding a mixed run on tiny data: the reveals are under test, not the strategies' figures."""
    root = tmp_path_factory.mktemp("holdout")
    make_run(root, tiny_data, "mixed", MIXED[:6])
    return root


def fingerprint(run: Path) -> dict[str, str]:
    """sha256 of every file the loop builds prompts and state from."""
    names = [
        p
        for p in run.iterdir()
        if p.name.startswith("iter_")
        or p.name in ("learnings.md", "state.json", "config.json", "trade.py", "best_trade.py")
    ]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in names}


def test_first_report_records_the_reveal_and_later_reports_show_the_same_first_time(lab: Path) -> None:
    run = copy_run(lab / "train" / "mixed", "twice")
    assert read_reveals(run) == ()
    first = build_report(run, at=FIRST)
    population = list(first.population)
    assert first.holdout.first.at == FIRST and list(first.holdout.first.iterations) == population
    second = build_report(run, at=LATER)
    assert second.holdout.first.at == FIRST and len(second.holdout.reveals) == 2
    assert summary(second)["holdout_first_revealed_at"] == FIRST and summary(second)["holdout_looks"] == 2
    recorded = json.loads((run.path / HOLDOUT_FILE).read_text())
    assert [r["at"] for r in recorded["reveals"]] == [FIRST, LATER] and recorded["test_start"] == "2018-07-01"
    events = [e for e in run.read_journal() if e["event"] == "holdout_revealed"]
    assert [(e["at"], e["iterations"]) for e in events] == [(FIRST, population), (LATER, population)]
    assert "first revealed " + FIRST in holdout_section(second).note


def test_a_report_without_the_holdout_still_shows_an_earlier_reveal(lab: Path) -> None:
    run = copy_run(lab / "train" / "mixed", "later-quiet")
    build_report(run, at=FIRST)
    quiet = build_report(run, holdout=False)
    assert not quiet.holdout.looked and quiet.holdout.first.at == FIRST and len(quiet.holdout.reveals) == 1
    section = holdout_section(quiet)
    assert FIRST in section.note and section.rows  # the recorded test figures, marked with when they were revealed


def test_test_figures_match_an_independent_evaluation_beside_buy_and_hold(
    lab: Path, tiny_data: Path, sandbox_pool: SandboxPool
) -> None:
    run = copy_run(lab / "train" / "mixed", "independent")
    report = build_report(run, at=FIRST)
    best = report.best_iteration
    block = json.loads((run.path / f"iter_{best}_results.json").read_text())["block"]
    data = load_prepared(tiny_data)
    settings = EvalSettings(backtest=BacktestSettings(fill=Fill.NEXT_OPEN, cost_bps=2.0))
    test = evaluate_block(block, data, ("train", "val", "test"), settings, pool=sandbox_pool).windows["test"]
    assert summary(report)["best_test_return"] == pytest.approx(test["total_return"])
    assert summary(report)["buy_and_hold_test_return"] == pytest.approx(test["buy_and_hold_return"])
    assert report.holdout.first.test_return(best) == pytest.approx(test["total_return"])
    assert report.curves.test_start == data.splits.test_start
    assert report.curves.buy_and_hold.index[-1] == data.frame.index[-1]


def test_reporting_never_touches_what_prompts_are_built_from(lab: Path) -> None:
    run = copy_run(lab / "train" / "mixed", "untouched")
    before = fingerprint(run.path)
    report = build_report(run, at=FIRST)
    assert report.holdout.looked and fingerprint(run.path) == before
    test_return = f"{summary(report)['best_test_return']:.4f}"
    for path in run.path.iterdir():
        if path.name.startswith("iter_") or path.name == "learnings.md":
            assert test_return not in path.read_text()


def test_a_damaged_reveal_record_is_an_error_not_silence(lab: Path) -> None:
    run = copy_run(lab / "train" / "mixed", "damaged")
    (run.path / HOLDOUT_FILE).write_text(json.dumps({"reveals": [{"iterations": [1]}]}))
    with pytest.raises(ConfigError, match=r"holdout\.json is damaged"):
        read_reveals(RunDir(run.path))


def test_a_running_run_keeps_its_holdout_sealed_unless_asked(lab: Path) -> None:
    run = copy_run(lab / "train" / "mixed", "still-running")
    with run.locked():  # another process is running it: its population may still change
        sealed = build_report(run, at=FIRST)
        assert sealed.state == "running" and not sealed.holdout.looked and read_reveals(run) == ()
        assert "--reveal-running" in holdout_section(sealed).note
        opened = build_report(run, at=LATER, reveal_running=True)
    assert opened.holdout.looked and [r.at for r in read_reveals(run)] == [LATER]


def test_the_reveal_history_is_rebuilt_from_the_journal_when_holdout_json_is_gone(lab: Path) -> None:
    run = copy_run(lab / "train" / "mixed", "file-lost")
    build_report(run, at=FIRST)
    build_report(run, at=LATER)
    (run.path / HOLDOUT_FILE).unlink()
    assert [r.at for r in read_reveals(run)] == [FIRST, LATER]
    third = build_report(run, at="2030-03-01T00:00:00+00:00")
    assert third.holdout.first.at == FIRST and len(third.holdout.reveals) == 3
    assert "looked at 3 time(s)" in holdout_section(third).note
    recorded = json.loads((run.path / HOLDOUT_FILE).read_text())
    assert [r["at"] for r in recorded["reveals"]] == [FIRST, LATER, "2030-03-01T00:00:00+00:00"]
