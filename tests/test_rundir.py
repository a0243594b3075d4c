"""A run directory read back after damage or hand edits: one clear line naming the file and key, never a traceback,
never a committed iteration lost; run names that never collide."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import working_copy
from recording import RecordingReporter
from test_loop import records, settings
from typer.testing import CliRunner, Result

from autotrade.cli.app import app
from autotrade.propose.prompts import load_prompt_files
from autotrade.research import loop
from autotrade.research.loop import start_run


def random_run(root: Path, data: Path, name: str | None, max_iter: int = 3) -> Path:
    """A finished random-policy run (no endpoint) under root/train/; its directory."""
    result = start_run(
        settings(data, max_iter=max_iter, seed=3, policy="random"),
        None,
        RecordingReporter(),
        prompts=load_prompt_files(root),
        name=name,
        root=root / "train",
    )
    return result.path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:  # noqa: F811 - fixture
    """Two finished runs: `old`, then `new` (the latest); each test works on a copy."""
    root = tmp_path_factory.mktemp("runs")
    random_run(root, tiny_data, "old")
    random_run(root, tiny_data, "new")
    return root


@pytest.fixture
def here(lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a fresh copy of the lab's train/."""
    return working_copy(lab, tmp_path, monkeypatch)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", "OPENAI_MODEL": ""})


def said(outcome: Result) -> str:
    return " ".join(outcome.output.split())


def assert_one_line_error(outcome: Result, *parts: str) -> None:
    """Exit 1 with an `error:` line holding `parts`, and no traceback."""
    assert outcome.exit_code == 1 and type(outcome.exception) is SystemExit, (outcome.output, outcome.exception)
    assert "Traceback" not in outcome.output and "error:" in outcome.output
    for part in parts:
        assert part in said(outcome), said(outcome)


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def set_key(*keys: str, value: object) -> Callable[[dict], object]:
    def change(raw: dict) -> None:
        for key in keys[:-1]:
            raw = raw[key]
        raw[keys[-1]] = value

    return change


def journal_as_directory(run: Path) -> None:
    (run / "journal.jsonl").unlink()
    (run / "journal.jsonl").mkdir()


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "config.json holds a list": (
        lambda run: (run / "config.json").write_text("[]"),
        "config.json: holds [], not an object",
    ),
    "state.json holds null": (
        lambda run: (run / "state.json").write_text("null"),
        "state.json: holds null, not an object",
    ),
    "next_iteration is text": (
        lambda run: edit_json(run / "state.json", set_key("next_iteration", value="ten")),
        'state.json: next_iteration is "ten", not a whole number',
    ),
    "a results file holds a list": (
        lambda run: (run / "iter_1_results.json").write_text("[]"),
        "iter_1_results.json: holds [], not an object",
    ),
    "the journal is a directory": (journal_as_directory, "journal.jsonl: unreadable"),
    "a setting has the wrong type": (
        lambda run: edit_json(run / "config.json", set_key("settings", "max_iter", value="3")),
        'config.json: settings.max_iter is "3", not a whole number',
    ),
    "a state value has the wrong type": (
        lambda run: edit_json(run / "state.json", set_key("fail_streak", value=1.5)),
        "state.json: fail_streak is 1.5, not a whole number",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_run_is_listed_with_why_and_breaks_no_other_run(damage: str, here: Path) -> None:
    harm, why = DAMAGE[damage]
    harm(here / "train" / "new")
    listed = invoke("runs")
    assert listed.exit_code == 0, listed.output
    assert "damaged:" in said(listed) and why in said(listed)
    assert "old" in said(listed) and said(listed).count("finished") == 1  # the healthy run still shows its state


@pytest.mark.parametrize("damage", DAMAGE)
def test_latest_skips_a_damaged_run_and_a_named_one_is_one_line(damage: str, here: Path) -> None:
    harm, why = DAMAGE[damage]
    harm(here / "train" / "new")
    latest = invoke("resume", "--quiet")
    assert latest.exit_code == 0, latest.output
    assert "run old already finished" in said(latest) and "skipping run new, which is damaged" in said(latest)
    for command in ("resume", "report"):
        assert_one_line_error(invoke(command, "new", *(["--no-holdout"] if command == "report" else [])), why)


def test_a_hand_edited_setting_is_named_by_file_and_key_not_as_a_flag(here: Path) -> None:
    edit_json(here / "train" / "new" / "config.json", set_key("settings", "objective", value="bogus"))
    outcome = invoke("resume", "new")
    assert_one_line_error(outcome, 'config.json: settings.objective is "bogus": choose one of val_return')
    assert "--objective" not in outcome.output


@pytest.mark.parametrize("key,value,recorded", [("cost_bps", 5.0, "2.0"), ("fill", "close", '"next-open"')])
def test_a_hand_edit_of_an_evaluation_setting_is_refused(key: str, value: object, recorded: str, here: Path) -> None:
    edit_json(here / "train" / "new" / "config.json", set_key("settings", key, value=value))
    for args in (("resume", "new"), ("report", "new", "--no-holdout")):
        assert_one_line_error(
            invoke(*args),
            f"config.json: settings.{key} is {json.dumps(value)}, but iteration 0 was evaluated with {recorded}",
            "--from",
        )


def test_every_record_keeps_the_rules_it_was_evaluated_under(here: Path) -> None:
    found = records(here / "train" / "new")
    assert all(r["evaluated_with"]["cost_bps"] == 2.0 and r["evaluated_with"]["fill"] == "next-open" for r in found)
    assert len({json.dumps(r["evaluated_with"], sort_keys=True) for r in found}) == 1


def test_without_state_json_resume_says_what_is_there_and_how_to_recover(here: Path) -> None:
    (here / "train" / "new" / "state.json").unlink()
    assert_one_line_error(
        invoke("resume", "new"),
        "state.json is missing, though 3 iterations (0-2) have results",
        "restore it from a backup",
        "autotrade run --from train/new/best_trade.py",
    )
    assert len(records(here / "train" / "new")) == 3


def test_lowering_next_iteration_by_hand_is_refused_and_deletes_nothing(here: Path) -> None:
    run = here / "train" / "new"
    before = sorted(p.name for p in run.iterdir())

    def lower(state: dict) -> None:
        state.update(next_iteration=1, population=[], best_iteration=None, next_parent=None)

    edit_json(run / "state.json", lower)
    assert_one_line_error(
        invoke("resume", "new"),
        "next_iteration is 1, but iterations 1-2 exist and were committed",
        "nothing was deleted",
    )
    assert sorted(p.name for p in run.iterdir()) == before and len(records(run)) == 3


def test_a_state_pointing_past_the_committed_iterations_is_one_line(here: Path) -> None:
    edit_json(here / "train" / "new" / "state.json", set_key("next_iteration", value=2))
    assert_one_line_error(invoke("resume", "new"), "state.json:")


def test_an_empty_name_is_refused(here: Path, tiny_data: Path) -> None:  # noqa: F811 - fixture
    before = sorted(p.name for p in (here / "train").iterdir())
    outcome = invoke("run", "--name", "", "--policy", "random", "--max-iter", "1", "--data", str(tiny_data))
    assert_one_line_error(outcome, "run name ''")
    assert sorted(p.name for p in (here / "train").iterdir()) == before


def test_two_runs_started_in_the_same_second_get_two_names(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: F811
    monkeypatch.setattr(loop, "default_name", lambda ticker: "spx-20250101-000000")
    first = random_run(tmp_path, tiny_data, None, max_iter=1)
    second = random_run(tmp_path, tiny_data, None, max_iter=1)
    assert (first.name, second.name) == ("spx-20250101-000000", "spx-20250101-000000-2")
    assert all(records(run)[0]["status"] == "ok" for run in (first, second))


@pytest.mark.parametrize("left", ["nothing", "config.json only"])
def test_a_start_that_never_committed_is_reused_by_its_name(left: str, tmp_path: Path, tiny_data: Path) -> None:  # noqa: F811
    run = tmp_path / "train" / "half"
    run.mkdir(parents=True)
    if left == "config.json only":
        (run / "config.json").write_text('{"name": "half"}')
        (run / "journal.jsonl").write_text('{"event": "run_started"}\n')
    assert random_run(tmp_path, tiny_data, "half", max_iter=1) == run
    assert records(run)[0]["iteration"] == 0
    journal = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]
    assert [e["event"] for e in journal].count("run_started") == 1


def test_resuming_a_start_that_never_committed_says_to_start_it_again(here: Path) -> None:
    run = here / "train" / "half"
    run.mkdir()
    shutil.copy(here / "train" / "new" / "config.json", run / "config.json")
    assert_one_line_error(invoke("resume", "half"), "run 'half' never started", "autotrade run --name half")
