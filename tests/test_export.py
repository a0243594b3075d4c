"""`autotrade export`: every committed attempt of runs as one JSON line (prompt messages, reply, reasoning, status,
reward and its components), never anything of the held-out test window. One real run against the loopback server,
shared by the tests that read it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from legacy_run import FIXTURE
from openai_server import OpenAIServer, Recorded, Reply
from recording import RecordingReporter
from test_loop import LOOKAHEAD, NO_CODE, good, settings, sma_block, start
from typer.testing import CliRunner

from autotrade.candidate import baseline_source, extract_block
from autotrade.cli.app import app
from autotrade.propose.prompts import load_prompt_files
from autotrade.propose.reply import strip_reasoning
from autotrade.research.loop import start_run
from autotrade.research.rundir import RunDir

runner = CliRunner()
THOUGHT = "the fast average should lead the slow one"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Iterator[tuple[Path, list[Recorded]]]:
    """A model run under the rubric: 1 ok (with the server's separate reasoning), 2 ok after a repair turn (its
    reply think-tagged), 3 lookahead; with the requests the server received, in order."""
    root = tmp_path_factory.mktemp("export")
    with OpenAIServer() as server:
        server.script(
            [
                Reply(good(), reasoning_content=THOUGHT, usage=(1000, 200)),
                Reply(NO_CODE, usage=(1100, 20)),
                Reply("<think>shorter windows</think>" + good(5, 20), usage=(1500, 210)),
                Reply(LOOKAHEAD),
            ]
        )
        result, _ = start(server, root, tiny_data, "lab", max_iter=4, repair=1, objective="rubric")
        assert result.iterations == 4
        yield root, server.chat_requests


def export(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[list[dict[str, Any]], str]:
    """Run `autotrade export` in root; the parsed lines and the stderr summary."""
    monkeypatch.chdir(root)
    outcome = runner.invoke(app, ["export", *args])
    assert outcome.exit_code == 0, outcome.output
    return [json.loads(line) for line in outcome.stdout.splitlines()], outcome.stderr.strip()


def keys(value: Any) -> Iterator[str]:
    """Every key anywhere in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys(item)


def test_every_committed_iteration_is_one_line_that_parses(lab: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = lab
    lines, summary = export(root, monkeypatch, "lab", "--format", "jsonl")
    committed = [e for e in RunDir(root / "train" / "lab").read_journal() if e["event"] == "iteration_committed"]
    assert [line["iteration"] for line in lines] == [e["iteration"] for e in committed] == [0, 1, 2, 3]
    assert [line["status"] for line in lines] == ["ok", "ok", "ok", "lookahead"]
    assert summary == "exported 4 attempt(s) from 1 run(s) (0 filtered out)"


def test_a_model_attempts_messages_are_what_the_server_received_for_its_last_turn(
    lab: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, requests = lab
    lines, _ = export(root, monkeypatch, "lab")
    sent = [request.body["messages"] for request in requests]
    assert [line["messages"] for line in lines] == [None, sent[0], sent[2], sent[3]]  # the baseline asked no model
    assert len(sent[2]) == 3 and sent[2][1] == {"role": "assistant", "content": NO_CODE}


def test_the_reply_leaves_its_reasoning_out_and_reasoning_holds_the_servers_field_or_the_think_tags(
    lab: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = lab
    lines, _ = export(root, monkeypatch, "lab")
    assert (lines[1]["reply"], lines[1]["reasoning"]) == (strip_reasoning(good()), THOUGHT)
    assert (lines[2]["reply"], lines[2]["reasoning"]) == (strip_reasoning(good(5, 20)), "shorter windows")
    assert (lines[3]["reasoning"], lines[0]["reply"], lines[0]["model"]) == ("", "", None)


def test_each_line_holds_the_block_the_harness_evaluated(lab: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = lab
    lines, _ = export(root, monkeypatch, "lab")
    assert lines[0]["block"] == extract_block(baseline_source())  # iteration 0: the starting strategy, no reply
    assert lines[1]["block"] == sma_block(10, 30)


def test_the_reward_is_the_loops_own_score_and_a_failure_gets_the_gated_floor_with_its_gate(
    lab: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = lab
    lines, _ = export(root, monkeypatch, "lab")
    recorded = RunDir(root / "train" / "lab").records(4)
    assert [line["reward"] for line in lines[:3]] == [a.objective for a in recorded[:3]]
    assert all(0 < line["reward"] <= 1 and all(line["gates"].values()) for line in lines[:3])
    assert set(lines[1]["components"]) >= {"sharpe", "drawdown", "trades"}
    assert (lines[3]["reward"], lines[3]["gates"]["no_lookahead"], lines[3]["objective"]) == (0.0, False, "rubric")


def test_tokens_add_up_over_an_attempts_turns_and_name_its_model(lab: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = lab
    lines, _ = export(root, monkeypatch, "lab")
    assert lines[2]["tokens"] == {
        "prompt": 2600,
        "completion": 230,
        "turns": [{"prompt": 1100, "completion": 20}, {"prompt": 1500, "completion": 210}],
    }
    parent = RunDir(root / "train" / "lab").read_record(2).parent
    assert (lines[2]["model"], lines[2]["parent"], lines[0]["tokens"]["turns"]) == ("test-model", parent, [])


def test_only_and_min_reward_filter_lines_and_the_summary_counts_what_they_left_out(
    lab: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root, _ = lab
    ok, summary = export(root, monkeypatch, "lab", "--only", "ok")
    assert [line["status"] for line in ok] == ["ok"] * 3
    assert summary == "exported 3 attempt(s) from 1 run(s) (1 filtered out)"
    threshold = sorted(line["reward"] for line in ok)[1]
    out = tmp_path / "rollouts.jsonl"
    nothing, summary = export(root, monkeypatch, "lab", "--min-reward", str(threshold), "-o", str(out))
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert nothing == [] and len(kept) == 2 and all(line["reward"] >= threshold for line in kept)
    assert summary == f"exported 2 attempt(s) from 1 run(s) (2 filtered out) to {out}"


def test_no_key_or_value_of_an_export_names_the_test_window(lab: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = lab
    lines, _ = export(root, monkeypatch, "lab")
    test_start = json.loads((root / "train" / "lab" / "config.json").read_text())["data"]["test_start"]
    for line in lines:
        assert test_start not in json.dumps(line) and not [key for key in keys(line) if "test" in key.lower()]


def test_a_run_written_before_prompts_were_kept_exports_with_messages_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(FIXTURE, tmp_path / "train" / "old")
    lines, _ = export(tmp_path, monkeypatch, "old")
    assert len(lines) == 6 and all(line["messages"] is None for line in lines)
    assert [line["status"] for line in lines][:2] == ["ok", "parse_error"]
    assert lines[1]["reply"] == (FIXTURE / "iter_1_response.md").read_text().strip()
    assert lines[1]["reward"] is None  # val_return's gated value, -inf, is no JSON number


def test_a_policy_that_reads_no_prompt_keeps_none_and_exports_messages_null(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    random_run = settings(tiny_data, max_iter=2, policy="random")
    start_run(
        random_run, None, RecordingReporter(), prompts=load_prompt_files(tmp_path), name="r", root=tmp_path / "train"
    )
    assert (tmp_path / "train" / "r" / "iter_1_response.md").exists()
    assert not list((tmp_path / "train" / "r").glob("iter_*_prompt.md"))
    lines, _ = export(tmp_path, monkeypatch, "r")
    assert [(line["policy"], line["messages"]) for line in lines] == [("random", None), ("random", None)]


def test_the_debris_of_an_uncommitted_iteration_is_not_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "train" / "old"
    shutil.copytree(FIXTURE, run)
    debris = json.loads((run / "iter_5_results.json").read_text()) | {"iteration": 6}
    (run / "iter_6_results.json").write_text(json.dumps(debris))
    (run / "iter_6_prompt.md").write_text("a prompt whose iteration never committed")
    lines, _ = export(tmp_path, monkeypatch, "old")
    assert [line["iteration"] for line in lines] == [0, 1, 2, 3, 4, 5]


def test_an_unknown_run_is_one_line_on_stderr_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(FIXTURE, tmp_path / "train" / "old")
    monkeypatch.chdir(tmp_path)
    outcome = runner.invoke(app, ["export", "old", "nope"])
    assert outcome.exit_code == 1 and outcome.stdout == ""
    assert outcome.stderr.strip().splitlines() == ["error: no run named 'nope' in train/ (recent: old)"]


def test_a_run_missing_a_committed_reply_is_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(FIXTURE, tmp_path / "train" / "old")
    (tmp_path / "train" / "old" / "iter_2_response.md").unlink()
    monkeypatch.chdir(tmp_path)
    outcome = runner.invoke(app, ["export", "old"])
    assert outcome.exit_code == 1 and outcome.stdout == ""
    assert outcome.stderr.strip().splitlines() == [
        "error: train/old/iter_2_response.md: missing, though iteration 2 was committed with it"
    ]


def test_a_non_finite_min_reward_is_one_line_on_stderr_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(FIXTURE, tmp_path / "train" / "old")
    monkeypatch.chdir(tmp_path)
    outcome = runner.invoke(app, ["export", "old", "--min-reward", "nan"])
    assert outcome.exit_code == 1
    assert outcome.stderr.strip().splitlines() == ["error: --min-reward nan: must be a finite number"]


def test_prompt_and_reasoning_files_are_iteration_files_so_resume_removes_them_as_debris(tmp_path: Path) -> None:
    names = ["iter_3_prompt.md", "iter_3_reasoning.md", "iter_3_repair_1_reasoning.md", "iter_3_repair_1.md"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert RunDir(tmp_path).iteration_files() == [(3, tmp_path / name) for name in sorted(names)]
