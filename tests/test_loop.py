"""The research loop end to end: the real openai client against the loopback server, real evaluations."""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from openai_server import Drop, Fault, OpenAIServer, Recorded, Reply, Trickle
from recording import RecordingReporter

from autotrade.candidate import BLOCK_START, GUARD
from autotrade.errors import ConfigError
from autotrade.propose.client import ModelSettings
from autotrade.propose.prompts import load_prompt_files
from autotrade.research.config import RunSettings, model_settings
from autotrade.research.loop import Reporter, RunResult, resume_run, start_run
from autotrade.research.population import Population, choose_parent, record_outcome
from autotrade.research.rundir import RunDir
from autotrade.sandbox.pool import SandboxPool

CANARY = "sk-canary-7f3a9c1e5b"  # the API key: must never reach a file


# -- replies -----------------------------------------------------------------------------------------


def sma_block(fast: int, slow: int) -> str:
    """A causal moving-average crossover with the given windows."""
    return (
        "def generate_features(df):\n"
        f"    df['fast'] = df['Close'].rolling({fast}).mean()\n"
        f"    df['slow'] = df['Close'].rolling({slow}).mean()\n"
        "    return df\n\n\n"
        "def strategy_logic(row):\n"
        "    if row['fast'] > row['slow']:\n"
        "        return 1\n"
        "    if row['fast'] < row['slow']:\n"
        "        return -1\n"
        "    return 0\n"
    )


def answer(block: str, title: str) -> str:
    """A well-formed reply: one python block, one markdown block."""
    return f"Here is my proposal.\n\n```python\n{block}```\n\n```markdown\n{title}\n\nBecause it should work.\n```\n"


def good(fast: int = 10, slow: int = 30) -> str:
    return answer(sma_block(fast, slow), f"SMA {fast}/{slow}")


KEY_ERROR = answer(
    "def generate_features(df):\n    return df\n\n\n"
    "def strategy_logic(row):\n    return 1 if row['RSI_14'] > 50 else -1\n",
    "RSI filter",
)
# Whole-sample statistics pass vetting; only the harness's truncation check can see the future in them.
LOOKAHEAD = answer(
    "def generate_features(df):\n    df['above_mean'] = df['Close'] - df['Close'].mean()\n    return df\n\n\n"
    "def strategy_logic(row):\n    return 1 if row['above_mean'] < 0 else -1\n",
    "Buy below the long-run mean",
)
REJECTED = answer(
    "import os\n\n\ndef generate_features(df):\n    os.system('true')\n    return df\n\n\n"
    "def strategy_logic(row):\n    return 1\n",
    "Shell out",
)
SYNTAX = answer("def generate_features(df)\n    return df\n\n\ndef strategy_logic(row):\n    return 1\n", "Typo")
NO_CODE = "I would add an RSI filter, but I will not write code today."
# Cut at the token limit inside its python block: no complete code to salvage.
CUT_IN_CODE = good()[: good().index("return df")]


def iteration_of(request: Recorded) -> int:
    """The iteration a proposal prompt is for (the template's heading, in the first user turn: repair turns follow)."""
    content = next(m["content"] for m in request.body["messages"] if m["role"] == "user")
    return int(re.search(r"^# Iteration (\d+)", content, re.M).group(1))


# -- data and runs -------------------------------------------------------------------------------------


def settings(data: Path, **overrides: object) -> RunSettings:
    # No repair unless a test asks: a scripted failure is then one reply, the iteration's outcome.
    values: dict = {"max_iter": 4, "max_fails": 10, "population": 3, "seed": 7, "data_dir": str(data), "repair": 0}
    return RunSettings(**{**values, **overrides})


def start(
    server: OpenAIServer,
    root: Path,
    data: Path,
    name: str = "t",
    *,
    endpoint: ModelSettings | None = None,
    reporter: Reporter | None = None,
    **overrides: object,
) -> tuple[RunResult, Reporter]:
    """Run in-process; return the result and the reporter that heard it (a recording one unless given)."""
    reporter = reporter or RecordingReporter()
    endpoint = endpoint or model_settings(base_url=server.base_url, environ={"OPENAI_API_KEY": CANARY})
    result = start_run(
        settings(data, **overrides),
        endpoint,
        reporter,
        prompts=load_prompt_files(root),
        name=name,
        root=root / "train",
    )
    return result, reporter


def records(run: Path) -> list[dict]:
    """Every results record of a run directory, by iteration."""
    found = sorted(run.glob("iter_*_results.json"), key=lambda p: int(p.name.split("_")[1]))
    return [json.loads(p.read_text()) for p in found]


def assert_no_key_anywhere(run: Path) -> None:
    for path in run.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


# -- tests ---------------------------------------------------------------------------------------------


def test_mixed_replies_are_recorded_with_typed_statuses_and_the_run_goes_on(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script(
        [
            Reply(good()),
            Reply(KEY_ERROR),
            Reply(LOOKAHEAD),
            Reply(NO_CODE),
            Reply(""),
            Reply(CUT_IN_CODE, finish_reason="length"),
            Reply(REJECTED),
            Reply(SYNTAX),
        ]
    )
    result, reporter = start(openai_server, tmp_path, tiny_data, max_iter=9)
    statuses = [r["status"] for r in records(result.path)]
    assert statuses == [
        "ok",
        "ok",
        "runtime_error",
        "lookahead",
        "parse_error",
        "empty",
        "truncated",
        "rejected",
        "syntax_error",
    ]
    assert (result.status, result.stop_reason, result.iterations) == ("finished", "max_iter", 9)
    key_error = records(result.path)[2]
    assert key_error["error_type"] == "KeyError" and "RSI_14" in key_error["message"]
    # The reporter hears each attempt as committed, its failures' messages included (the CLI shows them as why=).
    assert [a.to_json() for a in reporter.attempts] == records(result.path)


def test_a_reply_cut_after_its_python_block_is_evaluated_and_keeps_its_finish_reason(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    # As a llama.cpp server sent it: a complete block, then a hypothesis cut off by the token limit.
    cut = f"SMA 10/30 crossover.\n\n```python\n{sma_block(10, 30)}```\n\n```markdown\nThe fast average leads the"
    openai_server.script([Reply(cut, finish_reason="length")])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=2)
    salvaged = records(result.path)[1]
    assert (salvaged["status"], salvaged["finish_reason"], salvaged["reply_source"]) == ("ok", "length", "python-block")
    assert salvaged["block"] == sma_block(10, 30) and salvaged["val_return"] is not None
    assert salvaged["hypothesis"] == "SMA 10/30 crossover."  # the prose, not the cut markdown block
    assert (result.path / "iter_1_trade.py").is_file()


def test_results_record_what_the_report_needs(openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path) -> None:
    openai_server.script([Reply(good(), usage=(1234, 321)), Reply(KEY_ERROR)])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=3)
    base, first, failed = records(result.path)
    assert base["parent"] is None and first["parent"] == 0 and failed["parent"] == 1
    assert (first["prompt_tokens"], first["completion_tokens"], first["finish_reason"]) == (1234, 321, "stop")
    assert first["latency_s"] > 0 and first["eval_s"] > 0 and first["usage_estimated"] is False
    assert first["val_return"] == first["windows"]["val"]["total_return"] and first["objective"] == first["val_return"]
    assert first["block"] == sma_block(10, 30) and first["hypothesis"].startswith("SMA 10/30")
    assert failed["error_type"] == "KeyError" and failed["traceback"] and failed["train_return"] is None
    assert (result.path / "iter_1_response.md").read_text() == good().strip()
    assert "test" not in first["windows"]


def test_run_directory_holds_runnable_trade_files_and_the_best(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script([Reply(good(5, 20)), Reply(KEY_ERROR)])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=3)
    run = result.path
    for name in (
        "trade.py",
        "best_trade.py",
        "iter_0_trade.py",
        "iter_1_trade.py",
        "learnings.md",
        "config.json",
        "state.json",
        "journal.jsonl",
    ):
        assert (run / name).is_file(), name
    best = result.population[0].iteration
    assert (run / "best_trade.py").read_text() == (run / f"iter_{best}_trade.py").read_text()
    lines = (run / "iter_1_trade.py").read_text().splitlines()
    assert lines[lines.index(BLOCK_START) - 1] == GUARD  # runnable: the guard hands it to the sandbox first
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["seed"] == 7 and config["model"]["model"] == "test-model"
    assert len(config["data"]["sha256"]) == 64
    assert_no_key_anywhere(run)


def test_learnings_hold_each_iteration_once_with_actual_results(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script([Reply(good()), Reply(NO_CODE)])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=3)
    text = (result.path / "learnings.md").read_text()
    for i in range(3):
        assert text.count(f"## Iteration {i} ") == 1
    assert "SMA 10/30" in text and "SYSTEM: status ok; train_return" in text and "SYSTEM: status parse_error" in text


def test_random_reversion_and_the_stop_rule_follow_the_seed(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    # Three distinct good strategies fill the population; then failures only, until --max-fails.
    openai_server.script([Reply(good(5, 20)), Reply(good(10, 50)), Reply(good(20, 100))] + [Reply(KEY_ERROR)] * 10)
    result, _ = start(openai_server, tmp_path, small_data, max_iter=20, max_fails=4, population=3, seed=11)
    found = records(result.path)
    assert (result.status, result.stop_reason) == ("finished", "max_fails")
    # Replay the rules on the recorded objectives: population, streak and parents must match exactly.
    population, streak, rng, parent = Population(3), 0, random.Random(11), None
    for record in found:
        assert record["parent"] == parent
        step = record_outcome(
            population, streak, record["iteration"], record["objective"] if record["status"] == "ok" else None
        )
        population, streak = step.population, step.fail_streak
        parent = choose_parent(population, record["iteration"], step.entered, rng)
        assert (record["entered_population"], record["fail_streak"]) == (step.entered, streak)
    assert streak == 4 and len(found) == len([r for r in found if r["status"] == "ok"]) + 4
    reverted = [
        r["parent"] for r in found if r["iteration"] > 0 and not found[r["iteration"] - 1]["entered_population"]
    ]
    assert len(reverted) == 3 and len(set(reverted)) > 1  # branches from random members, not always the latest
    state = json.loads((result.path / "state.json").read_text())
    assert state["population"] == population.to_list() and state["next_parent"] == parent


def test_same_seed_same_parents(openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path) -> None:
    script = [Reply(good(5, 20)), Reply(good(10, 50))] + [Reply(KEY_ERROR)] * 4
    parents = []
    for name in ("a", "b"):
        openai_server.script(script)
        result, _ = start(openai_server, tmp_path, tiny_data, name=name, max_iter=7, seed=3)
        parents.append([r["parent"] for r in records(result.path)])
    assert parents[0] == parents[1]


def test_prompts_show_columns_population_and_last_error_but_never_the_test_window(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    openai_server.script([Reply(KEY_ERROR), Reply(good())])
    start(openai_server, tmp_path, small_data, max_iter=3)
    second = openai_server.chat_requests[1].body["messages"][-1]["content"]
    assert "- `Close`: float64" in second and "2014-01-02" in second
    assert "FAILED with status `runtime_error` (KeyError)" in second and "RSI_14" in second
    assert "1. iteration 0 — val_return" in second
    for request in openai_server.chat_requests:
        content = request.body["messages"][-1]["content"]
        assert "2018-" not in content  # no test-window dates: sample rows are the first research rows


def test_an_endpoint_error_stops_cleanly_and_the_run_resumes(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script([Reply(good()), Fault(401, "bad key")])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=4)
    assert (result.status, result.stop_reason, result.iterations) == ("stopped", "endpoint_error", 2)
    assert "401" in result.message and CANARY not in result.message
    assert not (result.path / "iter_2_results.json").exists()
    openai_server.script([Reply(good(5, 20)), Reply(good(20, 60))])
    resumed = resume_run(RunDir(result.path), RecordingReporter(), api_key=CANARY)
    assert (resumed.status, resumed.iterations) == ("finished", 4)
    assert [r["iteration"] for r in records(result.path)] == [0, 1, 2, 3]


def quick_retries(server: OpenAIServer, **changes: object) -> ModelSettings:
    """The server's endpoint with backoff delays of milliseconds (and any other changes)."""
    endpoint = model_settings(base_url=server.base_url, environ={"OPENAI_API_KEY": CANARY})
    return replace(endpoint, retry_base_s=0.05, retry_max_s=0.2, **changes)


def restart_server(server: OpenAIServer, seconds: float) -> object:
    """A script step: the server goes down for `seconds` while it holds this request (which gets no answer)."""

    def step(request: Recorded) -> Drop:
        server.down_for(seconds)
        return Drop()

    return step


def test_a_model_server_restart_mid_run_is_waited_out_and_the_run_goes_on(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    # The retry delays are milliseconds here: five tries would be spent long before the server is back.
    openai_server.script([restart_server(openai_server, 1.5), Reply(good())])
    result, reporter = start(openai_server, tmp_path, small_data, max_iter=2, endpoint=quick_retries(openai_server))
    assert (result.status, result.iterations) == ("finished", 2), result.message
    assert records(result.path)[1]["status"] == "ok"
    # Each wait reaches the reporter (its CLI line: tests/test_cli_research.py), with 29-30 minutes of patience left.
    refused = [w for w in reporter.waits if w.problem == "connection refused"]
    assert refused and all(29 * 60 <= w.patience_left_s < 30 * 60 for w in refused), reporter.waits
    waits = [e for e in RunDir(result.path).read_journal() if e["event"] == "endpoint_wait"]
    assert waits and all(e["iteration"] == 1 for e in waits)


def test_a_server_down_past_the_patience_stops_the_run_resumably(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    openai_server.script([restart_server(openai_server, 2.0)])
    result, _ = start(
        openai_server, tmp_path, small_data, max_iter=2, endpoint=quick_retries(openai_server, patience_s=0.5)
    )
    assert (result.status, result.stop_reason, result.iterations) == ("stopped", "endpoint_error", 1)
    assert "endpoint patience 0.5s" in result.message and "connection refused" in result.message
    time.sleep(2.0)  # the server is back
    openai_server.script([Reply(good())])
    resumed = resume_run(RunDir(result.path), RecordingReporter(), api_key=CANARY)
    assert (resumed.status, resumed.iterations) == ("finished", 2)


def test_a_reply_cut_at_the_deadline_is_counted_in_the_iteration_record(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    openai_server.script([Trickle(0.03), Reply(good())])
    result, _ = start(
        openai_server, tmp_path, small_data, max_iter=2, endpoint=quick_retries(openai_server, timeout_s=0.5)
    )
    assert [(r["status"], r.get("deadline_hits")) for r in records(result.path)] == [("ok", None), ("ok", 1)]


def test_replies_cut_at_the_deadline_until_the_patience_is_spent_stop_the_run_and_the_journal_says_so(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    openai_server.script([Trickle(0.03)] * 4)
    endpoint = quick_retries(openai_server, timeout_s=0.5, patience_s=0.9)
    result, _ = start(openai_server, tmp_path, small_data, max_iter=2, endpoint=endpoint)
    assert (result.status, result.stop_reason, result.iterations) == ("stopped", "endpoint_error", 1)
    assert "no answer within 0.5 s" in result.message and "endpoint patience" in result.message
    stopped = [e for e in RunDir(result.path).read_journal() if e["event"] == "stopped"]
    assert stopped[-1]["deadline_hit"] is True


def test_preflight_failure_leaves_no_run_behind(openai_server: OpenAIServer, tmp_path: Path, small_data: Path) -> None:
    endpoint = model_settings(base_url=openai_server.base_url, model="no-such-model", environ={})
    with pytest.raises(ConfigError, match="no-such-model"):
        start_run(
            settings(small_data),
            endpoint,
            RecordingReporter(),
            prompts=load_prompt_files(tmp_path),
            name="x",
            root=tmp_path / "train",
        )
    assert not (tmp_path / "train" / "x").exists()


def test_a_prompt_template_with_an_unknown_placeholder_leaves_no_run_behind_with_either_policy(
    tmp_path: Path, small_data: Path
) -> None:
    # The prompts are pinned in config.json: a run started with a template that cannot render could never get
    # past iteration 1, not even on resume. The random policy has no preflight, so this must be checked apart.
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "prompt_template.md").write_text("{{program}}\n{{no_such_placeholder}}\n")
    with pytest.raises(ConfigError, match="no_such_placeholder"):
        start_run(
            settings(small_data, policy="random"),
            None,
            RecordingReporter(),
            prompts=load_prompt_files(tmp_path),
            name="p",
            root=tmp_path / "train",
        )
    assert not (tmp_path / "train" / "p").exists()


def test_a_baseline_only_run_needs_no_server(tmp_path: Path, small_data: Path) -> None:
    endpoint = model_settings(base_url="http://127.0.0.1:9/v1", environ={})
    result = start_run(
        settings(small_data, max_iter=1),
        endpoint,
        RecordingReporter(),
        prompts=load_prompt_files(tmp_path),
        name="b",
        root=tmp_path / "train",
    )
    assert (result.status, result.iterations) == ("finished", 1)


@pytest.mark.parametrize("objective", ["val_sharpe", "robust", "rubric"])
def test_each_objective_ranks_the_population(
    objective: str, openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    openai_server.script([Reply(good())])
    result, _ = start(openai_server, tmp_path, small_data, max_iter=2, objective=objective)
    found = records(result.path)
    assert all(r["objective_name"] == objective and isinstance(r["objective"], float) for r in found)
    if objective == "val_sharpe":
        assert found[1]["objective"] == found[1]["windows"]["val"]["sharpe"]
    ranked = sorted(found, key=lambda r: (-r["objective"], r["iteration"]))
    assert [a.iteration for a in result.population] == [r["iteration"] for r in ranked]


def test_a_run_in_use_by_another_process_is_refused(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script([Reply(good())])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=3, max_fails=1)
    run = RunDir(result.path)
    state = json.loads(run.state_path.read_text())
    run.write_json(run.state_path, {**state, "status": "stopped"})
    with run.locked():
        assert run.is_active() and run.status() == "running"
        with pytest.raises(ConfigError, match="being run by another process"):
            resume_run(RunDir(result.path), RecordingReporter(), api_key=CANARY)
    assert run.status() == "stopped"


def test_doctor_reports_models_a_timed_completion_and_the_data(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from autotrade.cli import research as cli_research

    app = typer.Typer()
    app.command("doctor")(cli_research.doctor)
    app.command("run")(cli_research.run)
    monkeypatch.chdir(tmp_path)
    openai_server.script([Reply("ready", usage=(12, 4))])
    env = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": CANARY, "OPENAI_MODEL": ""}
    outcome = CliRunner().invoke(app, ["doctor", "--data", str(small_data)], env=env)
    text = " ".join(outcome.output.split())
    assert "test-model · context 32,768" in text
    assert "12 + 4 tokens" in text and "tokens/s" in text and "said 'ready'" in text
    assert "data:" in text and "test (held out) from 2018-01-01" in text
    assert "sandbox: active: worker_process" in text
    assert CANARY not in outcome.output


SCRIPTED = [(5, 20), (20, 100), (8, 40), (10, 30)]  # iterations 1-4: crossovers whose rankings differ by objective


def test_the_chosen_objective_decides_the_population_order(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path, sandbox_pool: SandboxPool
) -> None:
    from autotrade.data.prepared import load_prepared
    from autotrade.evaluation.evaluate import Evaluation
    from autotrade.evaluation.score import score_code, score_evaluation
    from autotrade.status import Status

    data = load_prepared(tiny_data)
    orders = {}
    for objective in ("val_return", "val_sharpe", "robust", "rubric"):
        openai_server.script([Reply(good(fast, slow)) for fast, slow in SCRIPTED])
        result, _ = start(
            openai_server, tmp_path, tiny_data, name=objective, max_iter=5, objective=objective, robust_k=3
        )
        found = records(result.path)
        if objective == "robust":  # needs the equity curves: score the recorded code again through score_code
            expected = {
                r["iteration"]: score_code(r["block"], data, objective="robust", robust_k=3, pool=sandbox_pool).total
                for r in found
            }
        else:
            expected = {
                r["iteration"]: score_evaluation(Evaluation(Status(r["status"]), windows=r["windows"]), objective).total
                for r in found
            }
        assert [r["objective"] for r in found] == pytest.approx([expected[r["iteration"]] for r in found])
        ranked = sorted(expected, key=lambda i: (-expected[i], i))[:3]
        assert [a.iteration for a in result.population] == ranked
        assert json.loads((result.path / "state.json").read_text())["best_iteration"] == ranked[0]
        orders[objective] = tuple(ranked)
    assert len(set(orders.values())) >= 3  # the objective changes who survives, not just the numbers


@pytest.mark.parametrize(("objective", "words"), [("robust", "over 3 consecutive"), ("rubric", "score in [0, 1]")])
def test_the_prompt_names_the_objective_the_model_is_judged_on(
    objective: str, words: str, openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    openai_server.script([Reply(good())])
    start(openai_server, tmp_path, small_data, max_iter=2, objective=objective, robust_k=3)
    prompt = openai_server.chat_requests[0].body["messages"][-1]["content"]
    assert f"**{objective}**: " in prompt
    assert words in prompt and f"(best first, by {objective})" in prompt


def test_a_candidate_with_deferred_look_ahead_cuts_enters_only_after_they_are_checked(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace as with_changes

    from autotrade.evaluation.evaluate import Evaluation, Status
    from autotrade.research import loop

    real_evaluate = loop.evaluate_block
    checked: list[int] = []

    def deferring(block: str, *args: object) -> Evaluation:
        return with_changes(real_evaluate(block, *args), deferred_cuts=(500, 600))

    def failing_gate(evaluation: Evaluation, *args: object) -> Evaluation:
        checked.append(len(evaluation.deferred_cuts))
        return Evaluation(status=Status.LOOKAHEAD, message="look-ahead: found by a deferred cut")

    monkeypatch.setattr(loop, "evaluate_block", deferring)
    monkeypatch.setattr(loop, "finish_gate", failing_gate)
    openai_server.script([Reply(good(5, 20))])
    result, _ = start(openai_server, tmp_path, small_data, max_iter=2)
    found = records(result.path)
    assert checked == [2, 2]  # the baseline and the proposal each would have entered: both checked first
    assert [r["status"] for r in found] == ["lookahead", "lookahead"] and not any(
        r["entered_population"] for r in found
    )


def test_once_the_last_ok_attempts_share_one_family_the_next_prompt_asks_for_another_and_its_record_says_so(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    openai_server.script([Reply(good(10, 30)), Reply(good(5, 20))])  # crossovers, like the baseline
    result, _ = start(openai_server, tmp_path, small_data, max_iter=3, collapse_window=2)
    prompts = {iteration_of(r): r.body["messages"][-1]["content"] for r in openai_server.chat_requests}
    said = "Your last 2 working strategies were all built on the same indicators: moving average + crossover."
    assert said not in prompts[1] and said in prompts[2]
    saved = records(result.path)
    assert [r["status"] for r in saved] == ["ok"] * 3
    assert [r.get("nudged", False) for r in saved] == [False, False, True]
    assert [r["families"] for r in saved] == [["moving average", "crossover"]] * 3
