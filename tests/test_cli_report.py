"""`autotrade report`, `runs` and `compare` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from conftest import working_copy
from legacy_run import fixture_records, legacy_copy
from test_report import KEY_ERROR, MIXED, good, make_run
from typer.testing import CliRunner, Result

from autotrade.cli import app as cli
from autotrade.cli import report as cli_report
from autotrade.fmt import pct
from autotrade.report.compute import summarize_run
from autotrade.report.holdout import HOLDOUT_FILE
from autotrade.report.render import HTML_FILE
from autotrade.research.rundir import RunDir


def app_under_test() -> typer.Typer:
    """The real CLI once it registers these commands; until then an app registering them the same way."""
    if {c.name for c in cli.app.registered_commands} >= {"report", "runs", "compare"}:
        return cli.app
    app = typer.Typer()
    app.command("report")(cli_report.report)
    app.command("runs")(cli_report.runs)
    app.command("compare")(cli_report.compare)
    return app


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app_under_test(), list(args), env={"COLUMNS": "200"})


def text_of(outcome: Result) -> str:
    """Everything the command said, whitespace collapsed (rich wraps to the terminal width)."""
    said = outcome.output + (str(outcome.exception) if outcome.exception else "")
    return " ".join(said.split())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """Two finished runs on tiny data (the commands' output is under test, not the figures), kept pristine: each test
    works on a copy."""
    root = tmp_path_factory.mktemp("cli")
    make_run(root, tiny_data, "alpha", MIXED)
    make_run(root, tiny_data, "beta", [good(10, 50), KEY_ERROR])
    return root


@pytest.fixture
def here(lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a fresh copy of the runs in train/."""
    return working_copy(lab, tmp_path, monkeypatch)


def test_report_prints_the_tables_and_summary_and_writes_its_files(here: Path) -> None:
    outcome = invoke("report", "alpha")
    assert outcome.exit_code == 0, text_of(outcome)
    said = text_of(outcome)
    for part in (
        "Leaderboard",
        "Held-out test",
        "Deflated Sharpe Ratio",
        "Failures by type",
        "Indicators used",
        "Spend",
    ):
        assert part in said
    assert "dsr: " in said and "top_failure: KeyError 40%" in said and "holdout_looks: 1" in said
    assert (here / "train" / "alpha" / HTML_FILE).is_file() and (here / "train" / "alpha" / HOLDOUT_FILE).is_file()


def test_report_of_a_running_run_shows_everything_but_the_test_window_until_asked(here: Path) -> None:
    run = RunDir(here / "train" / "alpha")
    with run.locked():  # another process is running it
        sealed = invoke("report", "alpha")
        assert sealed.exit_code == 0, text_of(sealed)
        assert "Leaderboard" in text_of(sealed) and "report alpha --reveal-running" in text_of(sealed)
        assert "holdout_looks: 0" in text_of(sealed) and not (run.path / HOLDOUT_FILE).exists()
        opened = invoke("report", "alpha", "--reveal-running")
    assert opened.exit_code == 0, text_of(opened)
    assert "holdout_looks: 1" in text_of(opened) and (run.path / HOLDOUT_FILE).is_file()


def test_report_defaults_to_the_latest_run(here: Path) -> None:
    outcome = invoke("report", "--no-holdout")
    assert outcome.exit_code == 0, text_of(outcome)
    assert "run: beta" in text_of(outcome) and "never been evaluated" in text_of(outcome)
    assert not (here / "train" / "beta" / HOLDOUT_FILE).exists()


def test_runs_lists_every_run_and_shows_the_test_only_once_revealed(here: Path) -> None:
    before = text_of(invoke("runs"))
    assert "alpha" in before and "beta" in before and "test-model" in before and "127.0.0.1" in before
    assert before.count("not revealed") == 2 and before.count("finished") == 2 and "50%" in before
    assert invoke("report", "alpha").exit_code == 0
    after = text_of(invoke("runs"))
    revealed = summarize_run(RunDir(here / "train" / "alpha")).test_return
    assert revealed is not None and pct(revealed) in after and after.count("not revealed") == 1


def test_compare_shows_the_runs_side_by_side_with_tokens_and_wall_time(here: Path) -> None:
    assert invoke("report", "alpha").exit_code == 0
    outcome = invoke("compare", "alpha", "beta")
    assert outcome.exit_code == 0, text_of(outcome)
    said = text_of(outcome)
    for part in (
        "alpha",
        "beta",
        "ok share",
        "50% (5/10)",
        "top failure",
        "KeyError 40%",
        "tokens in",
        "9,000",
        "wall time",
        "DSR",
        "PBO",
    ):
        assert part in said
    dsr = json.loads((here / "train" / "alpha" / "report.json").read_text())["summary"]["dsr"]
    assert dsr is not None and f"{dsr:.2f}" in said  # the DSR alpha's report found, computed again alike


def test_compare_needs_two_runs(here: Path) -> None:
    outcome = invoke("compare", "alpha")
    assert outcome.exit_code != 0 and "at least two" in text_of(outcome)


def test_an_unknown_run_is_a_one_line_error(here: Path) -> None:
    outcome = invoke("report", "nope")
    assert outcome.exit_code != 0 and "no run named 'nope'" in text_of(outcome)


def test_runs_without_any_run_says_how_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = invoke("runs")
    assert outcome.exit_code == 0 and "no runs in train/" in text_of(outcome)


def test_runs_and_compare_show_a_damaged_run_whose_error_looks_like_rich_markup(here: Path) -> None:
    # The error text quotes the file's content ("[/a]"): it must be shown as is, not parsed as rich markup (a crash).
    (here / "train" / "beta" / HOLDOUT_FILE).write_text('{"reveals": [{"at": "x", "iterations": ["[/a]"]}]}')
    for args in (("runs",), ("compare", "alpha", "beta")):
        outcome = invoke(*args)
        assert outcome.exit_code == 0, text_of(outcome)
        assert "damaged" in text_of(outcome)
    assert "with base 10: '[/a]'" in text_of(outcome)  # compare's note gives the whole error


def test_report_reads_a_run_an_older_version_wrote_and_reports_its_recorded_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = legacy_copy(tmp_path)
    monkeypatch.chdir(tmp_path)
    outcome = invoke("report", "legacy")
    assert outcome.exit_code == 0, text_of(outcome)
    recorded = json.loads((run / "iter_0_results.json").read_text())  # the best, by the run's state.json
    summary = json.loads((run / "report.json").read_text())["summary"]
    assert (summary["iterations"], summary["best_iteration"]) == (6, 0)
    assert summary["best_val_return"] == pytest.approx(recorded["val_return"], rel=1e-12)
    assert summary["best_train_return"] == pytest.approx(recorded["train_return"], rel=1e-12)
    assert "best_iteration: 0" in outcome.output and (run / HTML_FILE).is_file()
    assert [json.loads((run / f"iter_{i}_results.json").read_text()) for i in range(6)] == fixture_records()
