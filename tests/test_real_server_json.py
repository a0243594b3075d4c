"""`--reply-format json` against the real llama.cpp server (llama_server.py): its json_schema constraint holds.

llama.cpp enforces response_format json_schema with a grammar, so every reply must be the object whatever a 135M
model makes of the task: no reply of a json run may fail for its format. Kept short, as test_real_server.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_server import LlamaServer
from test_real_server import endpoint_env, results
from typer.testing import CliRunner, Result

from autotrade.cli.app import app
from autotrade.propose.reply_format import json_reply

# Room for a whole object: a reply cut at the limit is partial JSON (finish_reason length), not a format failure.
MAX_TOKENS = 512

# The short prompt of test_real_server.py without its markdown instruction: the run appends the JSON form.
SHORT_TEMPLATE = """Improve this Python trading strategy.

```python
{{parent_code}}
```
"""


@pytest.fixture(scope="module")
def json_run(
    llama_server: LlamaServer, small_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Result]:
    """`autotrade run --reply-format json --max-iter 3` against the real server, once for the module."""
    work = tmp_path_factory.mktemp("json_run")
    (work / "prompts").mkdir()
    (work / "prompts" / "prompt_template.md").write_text(SHORT_TEMPLATE, encoding="utf-8")
    argv = ["run", "--reply-format", "json", "--max-iter", "3", "--name", "json", "--quiet", "--seed", "1"]
    argv += ["--learnings-budget", "0", "--population", "1", "--data", str(small_data)]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        outcome = CliRunner().invoke(app, argv, env=endpoint_env(llama_server, MAX_TOKENS))
    return work / "train" / "json", outcome


def test_every_reply_of_a_json_run_against_a_real_server_is_the_schemas_object(json_run: tuple[Path, Result]) -> None:
    run, outcome = json_run
    assert outcome.exit_code == 0, outcome.output
    replies = results(run)[1:]
    assert [r["iteration"] for r in replies] == [1, 2]
    for record in replies:  # the format held; the code in it is whatever a 135M model earns
        assert record["finish_reason"] == "stop"
        json_reply((run / f"iter_{record['iteration']}_response.md").read_text(encoding="utf-8"), exact=True)
        if record["status"] == "parse_error":
            assert record["message"].startswith('the JSON reply\'s "code" defines neither function'), record["message"]


def test_doctor_says_a_real_servers_json_constraint_held(llama_server: LlamaServer, small_data: Path) -> None:
    argv = ["doctor", "--reply-format", "json", "--data", str(small_data)]
    outcome = CliRunner().invoke(app, argv, env=endpoint_env(llama_server, MAX_TOKENS))
    text = " ".join(outcome.output.split())
    assert outcome.exit_code == 0, outcome.output
    assert "ok reply format json: the json_schema constraint held" in text
