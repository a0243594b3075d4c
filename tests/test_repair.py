"""Same-conversation repair (--repair N): a reply that fails in a way its error can fix is sent that error and asked
again, up to N more turns, before the iteration counts as failed. Driven end to end against the loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import OpenAIServer, Recorded, Reply
from recording import RecordingReporter
from test_loop import CANARY, KEY_ERROR, LOOKAHEAD, NO_CODE, SYNTAX, good, iteration_of, records, settings, start
from test_resume import Crash, CrashingReporter

from autotrade.errors import ReplyError
from autotrade.propose.policies.base import Proposal
from autotrade.propose.policies.random_search import RandomProposer
from autotrade.propose.prompts import load_prompt_files
from autotrade.propose.reply import parse_reply
from autotrade.report.compute import build_report, summary
from autotrade.report.render import spend_section
from autotrade.research.config import model_settings
from autotrade.research.loop import resume_run, start_run
from autotrade.research.rundir import RunDir


def parse_error_of(text: str) -> str:
    """The exact message parse_reply gives a reply."""
    with pytest.raises(ReplyError) as caught:
        parse_reply(text, "")
    return str(caught.value)


def test_a_reply_that_fails_to_parse_is_repaired_and_the_iteration_is_ok_with_both_turns_recorded(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script([Reply(NO_CODE, usage=(100, 20)), Reply(good(), usage=(300, 50))])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=2, repair=1)
    record = records(result.path)[1]
    assert record["status"] == "ok" and record["prompt_tokens"] == 100 and record["completion_tokens"] == 20
    assert [(r["prompt_tokens"], r["error_status"]) for r in record["repairs"]] == [(300, "parse_error")]
    assert (result.path / "iter_1_response.md").read_text() == NO_CODE
    assert (result.path / "iter_1_repair_1.md").read_text().strip() == good().strip()
    attempt = RunDir(result.path).records(2)[1]
    assert (attempt.repaired, attempt.prompt_tokens, attempt.completion_tokens) == (True, 400, 70)
    state = json.loads((result.path / "state.json").read_text())
    assert (state["totals"]["prompt_tokens"], state["totals"]["completion_tokens"]) == (400, 70)
    assert "repaired after 1 turn" in (result.path / "learnings.md").read_text()


def test_the_repair_request_is_the_same_conversation_and_the_reply_then_the_exact_error(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script([Reply(NO_CODE, reasoning_content="my private thoughts"), Reply(good())])
    start(openai_server, tmp_path, tiny_data, max_iter=2, repair=1)
    first, second = (r.body["messages"] for r in openai_server.chat_requests)
    assert second[0] == first[0] and len(first) == 1
    assert second[1] == {"role": "assistant", "content": NO_CODE}  # the content only, never the reasoning
    assert second[2]["role"] == "user" and parse_error_of(NO_CODE) in second[2]["content"]
    assert "same format" in second[2]["content"] and "my private thoughts" not in json.dumps(second)


def test_a_candidate_that_raises_on_its_first_run_is_repaired_with_its_traceback(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script([Reply(KEY_ERROR), Reply(good())])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=2, repair=1)
    error = openai_server.chat_requests[1].body["messages"][2]["content"]
    assert "`runtime_error` (KeyError)" in error and "Traceback (last lines)" in error and "RSI_14" in error
    record = records(result.path)[1]
    assert record["status"] == "ok" and record["repairs"][0]["error_status"] == "runtime_error"
    assert record["repairs"][0]["error"] in error  # what the record says the model was told, it was told


def test_repair_0_keeps_one_turn_and_the_failure(openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path) -> None:
    openai_server.script([Reply(NO_CODE)])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=2, repair=0)
    record = records(result.path)[1]
    assert record["status"] == "parse_error" and "repairs" not in record
    assert len(openai_server.chat_requests) == 1 and not list(result.path.glob("iter_*_repair_*"))


def test_n_repair_turns_exhausted_is_a_failure_with_the_last_error_and_n_plus_one_turns(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script([Reply(NO_CODE), Reply(SYNTAX), Reply(KEY_ERROR)])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=2, repair=2)
    record = records(result.path)[1]
    assert (record["status"], record["error_type"]) == ("runtime_error", "KeyError")
    assert [r["error_status"] for r in record["repairs"]] == ["parse_error", "syntax_error"]
    assert [len(r.body["messages"]) for r in openai_server.chat_requests] == [1, 3, 5]
    assert result.iterations == 2 and records(result.path)[1]["fail_streak"] == 1


def test_a_look_ahead_is_not_repaired(openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path) -> None:
    openai_server.script([Reply(LOOKAHEAD)])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=2, repair=2)
    assert records(result.path)[1]["status"] == "lookahead" and "repairs" not in records(result.path)[1]
    assert len(openai_server.chat_requests) == 1


def test_the_random_policy_is_never_repaired(tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def unreadable(self: RandomProposer, request: object) -> Proposal:
        asked.append(1)
        return Proposal(text=NO_CODE, finish_reason="stop", model="random")

    monkeypatch.setattr(RandomProposer, "propose", unreadable)
    result = start_run(
        settings(tiny_data, max_iter=3, policy="random", repair=2),
        None,
        RecordingReporter(),
        prompts=load_prompt_files(tmp_path),
        name="r",
        root=tmp_path / "train",
    )
    assert [r["status"] for r in records(result.path)[1:]] == ["parse_error"] * 2 and len(asked) == 2
    assert not any("repairs" in r for r in records(result.path))


def repair_then_good(request: Recorded) -> Reply:
    """A reply that does not parse, then (in its repair turn) a good one: a different strategy in each iteration (the
    same one twice would be a duplicate); iteration 2's is good()."""
    windows = ((10, 30), (5, 20))[iteration_of(request) % 2]
    return Reply(good(*windows) if len(request.body["messages"]) > 1 else NO_CODE)


def test_parallel_flights_are_each_repaired_in_their_own_conversation(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = repair_then_good
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=3, parallel=2, repair=1)
    assert [(r["status"], len(r["repairs"])) for r in records(result.path)[1:]] == [("ok", 1), ("ok", 1)]
    repairs = [r for r in openai_server.chat_requests if len(r.body["messages"]) > 1]
    assert sorted(iteration_of(r) for r in repairs) == [1, 2]
    assert all(r.body["messages"][1]["content"] == NO_CODE for r in repairs)


def test_resume_after_an_interrupt_during_a_repair_turn_redoes_the_iteration_once_and_duplicates_nothing(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.default = repair_then_good
    endpoint = model_settings(base_url=openai_server.base_url, environ={"OPENAI_API_KEY": CANARY})
    with pytest.raises(Crash):
        start_run(
            settings(tiny_data, max_iter=3, repair=1),
            endpoint,
            CrashingReporter(2, "repairing (parse_error, turn 1 of 1)"),
            prompts=load_prompt_files(tmp_path),
            name="x",
            root=tmp_path / "train",
        )
    run = RunDir(tmp_path / "train" / "x")
    (run.path / "iter_2_repair_1.md").write_text("debris of a commit cut short")  # as if it died while committing
    resumed = resume_run(run, RecordingReporter(), api_key=CANARY)
    assert (resumed.status, resumed.iterations) == ("finished", 3)
    assert [(r["iteration"], r["status"], len(r["repairs"])) for r in records(run.path)[1:]] == [
        (1, "ok", 1),
        (2, "ok", 1),
    ]
    assert (run.path / "iter_2_repair_1.md").read_text().strip() == good().strip()
    journal = run.read_journal()
    assert [e["iteration"] for e in journal if e["event"] == "iteration_committed"] == [0, 1, 2]
    assert any(e["event"] == "discarded_uncommitted" and "iter_2_repair_1.md" in e["files"] for e in journal)
    assert (run.path / "learnings.md").read_text().count("## Iteration 2 ") == 1


def test_the_report_counts_the_iterations_repair_saved_and_what_its_turns_cost(tmp_path: Path, tiny_data: Path) -> None:
    from test_report import make_run

    replies = [Reply(NO_CODE, usage=(1000, 20)), Reply(good(), usage=(1500, 200))]  # iteration 1: saved
    replies += [Reply(KEY_ERROR, usage=(1000, 100)), Reply(KEY_ERROR, usage=(1600, 100))]  # iteration 2: not
    run = make_run(tmp_path, tiny_data, "rep", replies, max_iter=3, repair=1)
    report = build_report(RunDir(run), holdout=False)
    s = report.spend
    assert (s.repaired, s.repair_calls, s.repair_tokens) == (1, 2, 1700 + 1700)
    assert (s.model_calls, s.interrupted_calls, s.prompt_tokens) == (4, 0, 5100)  # a repair turn is no lost call
    assert ("repair (--repair)", "1 iteration(s) saved; 2 turn(s), 3,400 tokens") in spend_section(report).rows
    assert summary(report)["repaired"] == 1
