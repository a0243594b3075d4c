"""`--reply-format json`: the schema sent as response_format, the prompt, the parser, the early stop and the doctor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import Fault, OpenAIServer, Reply
from test_llm import MESSAGES, client_for
from test_loop import CANARY, records, sma_block, start
from typer.testing import CliRunner

from autotrade.cli.app import app
from autotrade.errors import ConfigError, ReplyError
from autotrade.propose.prompts import load_prompt_files
from autotrade.propose.reply import REASONING_JSON_MESSAGE, parse_reply
from autotrade.propose.reply_format import JSON_INSTRUCTIONS, JSON_SCHEMA, response_format
from autotrade.research.config import RunSettings
from autotrade.research.loop import render_proposal

HYPOTHESIS = "Crossovers ride trends.\n\nA 10/30 moving-average crossover should catch the long moves."


def json_reply(block: str = sma_block(10, 30), hypothesis: str = HYPOTHESIS) -> str:
    """A reply as a server constrained to the schema writes it."""
    return json.dumps({"hypothesis": hypothesis, "code": block})


def test_a_json_client_sends_the_schema_as_response_format(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(json_reply())])
    client_for(openai_server, reply_format="json").complete(MESSAGES)
    sent = openai_server.chat_requests[0].body["response_format"]
    schema = {"name": "strategy_reply", "schema": JSON_SCHEMA, "strict": True}
    assert sent == {"type": "json_schema", "json_schema": schema}
    assert sent == response_format("json")


def test_a_text_client_sends_no_response_format(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply("ready")])
    client_for(openai_server).complete(MESSAGES)
    assert "response_format" not in openai_server.chat_requests[0].body


def test_a_json_reply_parses_into_its_block_and_hypothesis() -> None:
    parsed = parse_reply(json_reply(), "", "stop", reply_format="json")
    assert parsed.block == sma_block(10, 30)
    assert parsed.learnings == HYPOTHESIS
    assert parsed.source == "json"


def test_a_json_reply_with_one_function_keeps_the_other_from_the_parent() -> None:
    only_features = "def generate_features(df):\n    return df\n"
    parsed = parse_reply(json_reply(only_features), sma_block(5, 20), "stop", reply_format="json")
    assert parsed.kept_from_parent == ("strategy_logic",)
    assert "def strategy_logic(row):" in parsed.block and "rolling(5)" not in parsed.block


@pytest.mark.parametrize("key", ["hypothesis", "code"])
def test_a_json_reply_missing_a_key_is_a_parse_error_naming_the_key(key: str) -> None:
    payload = {"hypothesis": HYPOTHESIS, "code": sma_block(10, 30)}
    del payload[key]
    with pytest.raises(ReplyError, match=f'no "{key}" key') as caught:
        parse_reply(json.dumps(payload), "", "stop", reply_format="json")
    assert caught.value.status == "parse_error"


def test_a_json_reply_whose_code_is_not_a_string_is_a_parse_error_naming_the_key() -> None:
    reply = json.dumps({"hypothesis": HYPOTHESIS, "code": ["def generate_features(df):", "    return df"]})
    with pytest.raises(ReplyError, match='"code" is list, not a string') as caught:
        parse_reply(reply, "", "stop", reply_format="json")
    assert caught.value.status == "parse_error"


def test_a_markdown_reply_in_a_json_run_is_a_parse_error_showing_its_start() -> None:
    reply = f"```python\n{sma_block(10, 30)}```\n"
    with pytest.raises(ReplyError, match=r"not a JSON object \(it starts \S```python def generate") as caught:
        parse_reply(reply, "", "stop", reply_format="json")
    assert caught.value.status == "parse_error"


def test_json_in_the_reasoning_field_only_is_a_parse_error_and_never_code() -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply("", "", "stop", reply_format="json", reasoning=json_reply())
    assert (str(caught.value), caught.value.status) == (REASONING_JSON_MESSAGE, "parse_error")


def test_a_json_reply_cut_at_the_token_limit_is_truncated() -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply(json_reply()[:60], "", "length", reply_format="json")
    assert caught.value.status == "truncated" and "JSON object" in str(caught.value)


def test_reading_a_json_reply_stops_once_its_object_is_closed(openai_server: OpenAIServer) -> None:
    reply = json_reply()
    ramble = "\n\nNext I might try volatility bands, or a breakout, or both at once." * 500
    openai_server.script([Reply(reply + ramble)])
    completion = client_for(openai_server, reply_format="json").complete(MESSAGES)
    assert (completion.early_stop, completion.finish_reason) == ("JSON object closed", "early_stop")
    assert completion.received_chars < len(reply) + 100
    parsed = parse_reply(completion.content, "", completion.finish_reason, reply_format="json")
    assert parsed == parse_reply(reply, "", "stop", reply_format="json")


def test_a_json_reply_that_ends_with_its_object_is_read_to_its_end(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(json_reply(), usage=(1234, 56))])
    completion = client_for(openai_server, reply_format="json").complete(MESSAGES)
    assert (completion.early_stop, completion.finish_reason, completion.completion_tokens) == (None, "stop", 56)


def test_braces_inside_the_json_code_do_not_stop_reading_early(openai_server: OpenAIServer) -> None:
    block = "def generate_features(df):\n    names = {'a': 1}\n    return df\n\n\n"
    block += "def strategy_logic(row):\n    return 0\n"
    openai_server.script([Reply(json_reply(block))])
    completion = client_for(openai_server, reply_format="json").complete(MESSAGES)
    assert completion.early_stop is None
    assert parse_reply(completion.content, "", completion.finish_reason, reply_format="json").block == block


def prompt_of(reply_format: str, small_data: Path, tmp_path: Path) -> str:
    from autotrade.data.prepared import load_prepared

    research = load_prepared(small_data).research_frame()
    settings = RunSettings(data_dir=str(small_data), reply_format=reply_format)
    return render_proposal(load_prompt_files(tmp_path), settings, research, [], [], 1, 0, sma_block(10, 30))


def test_the_prompt_of_a_json_run_states_the_json_form(small_data: Path, tmp_path: Path) -> None:
    prompt = prompt_of("json", small_data, tmp_path)
    assert prompt.endswith(JSON_INSTRUCTIONS)
    shape = json.loads(prompt.splitlines()[-2])  # the example object the model is shown
    assert list(shape) == ["hypothesis", "code"] and "def strategy_logic(row):\n" in shape["code"]


def test_a_text_runs_prompt_is_the_rendered_template_alone(small_data: Path, tmp_path: Path) -> None:
    text = prompt_of("text", small_data, tmp_path)
    assert prompt_of("json", small_data, tmp_path) == text + "\n" + JSON_INSTRUCTIONS
    assert text.endswith("ONE ```markdown block with your hypothesis.\n") and "JSON" not in text


def test_an_old_config_without_reply_format_reads_as_text() -> None:
    old = RunSettings().to_dict()
    del old["reply_format"]
    assert RunSettings.from_dict(old).reply_format == "text"


def test_a_config_with_an_unknown_reply_format_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"settings.reply_format is \S+: choose one of text, json"):
        RunSettings.from_dict({**RunSettings().to_dict(), "reply_format": "yaml"})


def test_json_reply_format_is_refused_with_the_random_policy() -> None:
    with pytest.raises(ConfigError, match="--reply-format 'json': json is how a model is asked to reply"):
        RunSettings(policy="random", reply_format="json")


def test_a_json_run_asks_with_the_schema_and_reads_json_replies(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path
) -> None:
    openai_server.script([Reply(json_reply(sma_block(5, 20))), Reply(json_reply(sma_block(10, 50)))])
    result, _ = start(openai_server, tmp_path, tiny_data, max_iter=3, reply_format="json")
    assert result.status == "finished"
    found = records(result.path)
    assert [(r["status"], r.get("reply_source")) for r in found[1:]] == [("ok", "json"), ("ok", "json")]
    assert found[1]["hypothesis"] == HYPOTHESIS
    for request in openai_server.chat_requests:
        assert request.body["response_format"] == response_format("json")
        assert request.body["messages"][-1]["content"].endswith(JSON_INSTRUCTIONS)
    config = json.loads((result.path / "config.json").read_text())
    assert config["settings"]["reply_format"] == "json"


def doctor(server: OpenAIServer, small_data: Path) -> str:
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": CANARY, "OPENAI_MODEL": "", "COLUMNS": "200"}
    outcome = CliRunner().invoke(app, ["doctor", "--reply-format", "json", "--data", str(small_data)], env=env)
    return " ".join(outcome.output.split()) + f" [exit {outcome.exit_code}]"


def test_doctor_says_the_json_constraint_held(openai_server: OpenAIServer, small_data: Path) -> None:
    openai_server.script([Reply("ready"), Reply(json_reply())])
    text = doctor(openai_server, small_data)
    assert "ok reply format json: the json_schema constraint held" in text and text.endswith("[exit 0]")
    assert openai_server.chat_requests[1].body["response_format"] == response_format("json")


@pytest.mark.parametrize(
    ("step", "said"),
    [
        (Fault(400, "response_format type json_schema is not supported"), "FAIL reply format json: the request with "),
        (Reply("Sure! Here is the JSON."), "did not hold: the reply is not a JSON object (it starts 'Sure"),
        (Reply('{"hypothesis": "h", "code": "c", "notes": "n"}'), "keys outside the schema: notes"),
        (Reply("", reasoning_content=json_reply()), "FAIL reply format json: the JSON object arrived in the"),
        (Reply('{"hypothesis": "h", "co', finish_reason="length"), "warn reply format json: the JSON was cut at max"),
    ],
    ids=["rejected", "not-json", "extra-key", "in-reasoning", "cut"],
)
def test_doctor_says_why_the_json_constraint_did_not_hold(
    openai_server: OpenAIServer, small_data: Path, step: Reply | Fault, said: str
) -> None:
    openai_server.script([Reply("ready"), step])
    text = doctor(openai_server, small_data)
    assert said in text
    assert text.endswith("[exit 0]" if said.startswith("warn") else "[exit 1]")
    if isinstance(step, Fault):
        assert "400" in text and "json_schema is not supported" in text
