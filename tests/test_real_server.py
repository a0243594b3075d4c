"""The product against a real model server: llama.cpp's HTTP server serving SmolLM2-135M (see llama_server.py).

The scripted loopback server (openai_server.py) tests every fault; these check what only a real server can:
that a run, the doctor, token accounting and the served context agree with llama.cpp as it really answers.
A 135M model writes poor code, so a run's statuses are whatever it earns; what must hold is that every
iteration ends in a known status and the run ends cleanly. Kept short: CI runs this file twice on 2 cores.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from llama_server import LlamaServer, get_json
from typer.testing import CliRunner, Result

from autotrade.cli.app import app
from autotrade.propose.client import ModelClient, ModelInfo, ModelSettings
from autotrade.status import Status

MAX_TOKENS = 256
# The packaged prompt is ~2,000 tokens, which this model reads at 40-70 tokens/s on one busy core: a short one
# (prompts/ in the working directory overrides the packaged files, as for a user) keeps each proposal to
# seconds while still going through rendering, the reply parser and the sandbox.
SHORT_TEMPLATE = """Improve this Python trading strategy. Reply with ONE ```python block defining both functions \
and ONE ```markdown block with your hypothesis.

```python
{{parent_code}}
```
"""


def endpoint_env(server: LlamaServer, max_tokens: int = MAX_TOKENS) -> dict[str, str]:
    """The environment pointing the CLI at the server; a timeout and patience that fail a stuck test in minutes."""
    return {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "",
        "OPENAI_MODEL": "",
        "OPENAI_MAX_TOKENS": str(max_tokens),
        "OPENAI_TEMPERATURE": "0",  # greedy, so a failure tends to recur (not exactly: a cached prompt decodes apart)
        "OPENAI_TIMEOUT": "180",
        "OPENAI_PATIENCE": "30s",
        "COLUMNS": "200",
    }


def results(run: Path) -> list[dict]:
    """Every results record of a run directory, by iteration."""
    found = sorted(run.glob("iter_*_results.json"), key=lambda p: int(p.name.split("_")[1]))
    return [json.loads(p.read_text()) for p in found]


@pytest.fixture(scope="module")
def real_run(
    llama_server: LlamaServer, small_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Result]:
    """`autotrade run --policy model --max-iter 3 --parallel 2` against the real server (2 slots), once for the
    module: iterations 1 and 2 are both asked from the baseline, so their requests are served side by side."""
    work = tmp_path_factory.mktemp("real_run")
    (work / "prompts").mkdir()
    (work / "prompts" / "prompt_template.md").write_text(SHORT_TEMPLATE, encoding="utf-8")
    argv = [
        "run",
        "--policy",
        "model",
        "--max-iter",
        "3",
        "--parallel",
        "2",
        "--name",
        "real",
        "--quiet",
        "--seed",
        "1",
    ]
    # Learnings and a large population only lengthen the preflight's worst-case prompt estimate.
    argv += ["--learnings-budget", "0", "--population", "1", "--data", str(small_data)]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        outcome = CliRunner().invoke(app, argv, env=endpoint_env(llama_server))
    return work / "train" / "real", outcome


def test_a_model_run_against_a_real_server_ends_cleanly_with_a_known_status_for_every_iteration(
    real_run: tuple[Path, Result], llama_server: LlamaServer
) -> None:
    run, outcome = real_run
    assert outcome.exit_code == 0, outcome.output
    assert f"model={llama_server.model_id}" in outcome.output
    found = results(run)
    assert [r["iteration"] for r in found] == [0, 1, 2]
    assert all(Status(r["status"]) in Status for r in found)  # Status() raises on an unknown one
    replies = found[1:]
    for record in replies:  # the recorded usage is the server's own (or, stopped early, counted from the text)
        assert record["usage_estimated"] is (record["finish_reason"] == "early_stop")
        assert 0 < record["prompt_tokens"] and 0 < record["completion_tokens"] <= MAX_TOKENS
        assert record["prompt_tokens"] + record["completion_tokens"] <= llama_server.n_ctx_per_slot
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "finished"


def test_the_report_of_a_real_run_works(real_run: tuple[Path, Result], llama_server: LlamaServer) -> None:
    run, _ = real_run
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(run.parent.parent)
        outcome = CliRunner().invoke(app, ["report", "real"], env={"COLUMNS": "200"})
    assert outcome.exit_code == 0, outcome.output
    assert (run / "report.html").is_file()


def test_the_recorded_token_counts_are_the_servers_usage(llama_server: LlamaServer) -> None:
    messages = [{"role": "user", "content": "Name three colours."}]
    # ignore_eos: exactly max_tokens are generated, so the completion count is known without trusting anyone
    settings = ModelSettings(
        base_url=llama_server.base_url, api_key="", max_tokens=8, temperature=0.0, extra_body={"ignore_eos": True}
    )
    reply = ModelClient(settings).complete(messages)
    body = {"model": llama_server.model_id, "messages": messages, "max_tokens": 8, "temperature": 0.0}
    request = urllib.request.Request(
        f"{llama_server.base_url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
        usage = json.load(response)["usage"]
    assert reply.usage_estimated is False
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason) == (usage["prompt_tokens"], 8, "length")


def test_the_served_context_is_the_per_slot_context_the_server_was_started_with(llama_server: LlamaServer) -> None:
    client = ModelClient(ModelSettings(base_url=llama_server.base_url, api_key=""))
    assert client.list_models() == [ModelInfo(llama_server.model_id, llama_server.n_ctx_per_slot)]
    # llama.cpp splits -c across the slots: 2 slots of half the context each, as /slots and /props say too
    slots = get_json(f"{llama_server.root}/slots")
    assert isinstance(slots, list)
    assert [s["n_ctx"] for s in slots] == [llama_server.n_ctx_per_slot] * llama_server.n_parallel
    assert client._llama_served_context() == llama_server.n_ctx_per_slot


def test_doctor_passes_against_a_real_server(llama_server: LlamaServer, small_data: Path) -> None:
    outcome = CliRunner().invoke(app, ["doctor", "--data", str(small_data)], env=endpoint_env(llama_server, 16))
    text = " ".join(outcome.output.split())
    assert outcome.exit_code == 0, outcome.output
    assert f"ok model (selected): {llama_server.model_id} · context {llama_server.n_ctx_per_slot:,}" in text
    assert " tokens/s · finish " in text and "(estimated)" not in text


def test_parallel_proposals_are_in_flight_together_on_a_server_with_two_slots(real_run: tuple[Path, Result]) -> None:
    run, outcome = real_run
    assert outcome.exit_code == 0, outcome.output
    events = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]
    order = [(e["event"], e.get("iteration")) for e in events if e["event"] in ("iteration_started", "model_reply")]
    first_reply = next(i for i, (event, _) in enumerate(order) if event == "model_reply")
    assert {("iteration_started", 1), ("iteration_started", 2)} <= set(order[:first_reply])
    assert [r["parent"] for r in results(run)[1:]] == [0, 0]  # both asked from the baseline
