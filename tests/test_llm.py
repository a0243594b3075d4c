"""The model client: the real `openai` client over HTTP against the scripted loopback server."""

from __future__ import annotations

import random
import socket
import time
from dataclasses import replace

import pytest
from openai_server import NO_CHOICES, Drop, Fault, OpenAIServer, Raw, Reply, Slow, Trickle

from autotrade.errors import ConfigError, EndpointError
from autotrade.propose.client import EndpointWait, ModelClient, ModelSettings, is_openai_reasoning_model, preflight

KEY = "sk-test-secret-key-0123456789"
MESSAGES = [{"role": "system", "content": "You write strategies."}, {"role": "user", "content": "x" * 400}]


def settings_for(server: OpenAIServer, **changes: object) -> ModelSettings:
    """Fast settings: short timeout, tiny backoff."""
    base = ModelSettings(
        base_url=server.base_url, api_key=KEY, model=None, timeout_s=2.0, max_retries=5, retry_base_s=0.001
    )
    return replace(base, **changes)


def client_for(server: OpenAIServer, sleeps: list[float] | None = None, **changes: object) -> ModelClient:
    """A client whose backoff sleeps are recorded instead of slept when `sleeps` is given."""
    sleep = sleeps.append if sleeps is not None else (lambda seconds: None)
    return ModelClient(settings_for(server, **changes), sleep=sleep, rng=random.Random(7))


def closed_port_url() -> str:
    """A loopback URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# -- retries ---------------------------------------------------------------------------------------------


def test_server_errors_are_retried_until_a_reply(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(500), Fault(503), Fault(502), Fault(504), Reply(content="done")])
    completion = client_for(openai_server).complete(MESSAGES)
    assert completion.content == "done"
    assert completion.attempts == 5
    assert len(openai_server.chat_requests) == 5


def test_retries_stop_after_max_retries_tries_in_all(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(500, "boom")] * 3 + [Reply(content="never reached")])
    with pytest.raises(EndpointError, match=r"failed 3 time\(s\); last: HTTP 500: boom"):
        client_for(openai_server, max_retries=3).complete(MESSAGES)
    assert len(openai_server.chat_requests) == 3
    assert openai_server.pending == 1


def test_rate_limit_waits_what_retry_after_ms_asks(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(429, retry_after_ms="150"), Reply(content="ok")])
    client = ModelClient(settings_for(openai_server), rng=random.Random(1))  # real sleeps
    assert client.complete(MESSAGES).content == "ok"
    first, second = openai_server.chat_requests
    assert second.at - first.at >= 0.15


def test_retry_after_seconds_is_honoured_and_capped(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(429, retry_after="1"), Fault(503, retry_after="3600"), Reply(content="ok")])
    sleeps: list[float] = []
    client_for(openai_server, sleeps, retry_after_cap_s=2.5).complete(MESSAGES)
    assert sleeps == [1.0, 2.5]


def test_backoff_doubles_with_jitter_within_bounds(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(500)] * 4 + [Reply(content="ok")])
    sleeps: list[float] = []
    client_for(openai_server, sleeps, retry_base_s=1.0, retry_max_s=5.0).complete(MESSAGES)
    ceilings = [1.0, 2.0, 4.0, 5.0]
    assert len(sleeps) == 4
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, ceilings, strict=True))
    assert len(set(sleeps)) == 4  # jittered, not a fixed schedule


def test_conflict_and_request_timeout_statuses_are_retried(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(408), Fault(409), Reply(content="ok")])
    assert client_for(openai_server).complete(MESSAGES).attempts == 3


def test_dropped_connection_is_retried(openai_server: OpenAIServer) -> None:
    openai_server.script([Drop(), Drop(), Reply(content="ok")])
    assert client_for(openai_server).complete(MESSAGES).content == "ok"
    assert len(openai_server.chat_requests) == 3


def test_dropped_connections_until_the_end_say_so(openai_server: OpenAIServer) -> None:
    openai_server.script([Drop()] * 2)
    with pytest.raises(EndpointError, match="closed the connection without answering"):
        client_for(openai_server, max_retries=2).complete(MESSAGES)


def test_a_timeout_is_retried_while_the_patience_lasts_then_names_the_deadline(openai_server: OpenAIServer) -> None:
    # A hung or reloading server misses deadlines: the patience covers timeouts as it covers refusals.
    openai_server.script([Slow(5.0)] * 8)
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"over .*last: no answer within 0.3 s .*raise OPENAI_TIMEOUT") as caught:
        client_for(openai_server, timeout_s=0.3, patience_s=1.0).complete(MESSAGES)
    assert 3 <= len(openai_server.chat_requests) <= 5 and time.monotonic() - started < 3.0
    assert caught.value.deadline_hit


def test_one_timeout_then_a_reply_succeeds(openai_server: OpenAIServer) -> None:
    openai_server.script([Slow(5.0), Reply(content="ok")])
    completion = client_for(openai_server, timeout_s=0.3).complete(MESSAGES)
    assert (completion.content, completion.attempts) == ("ok", 2)


def test_non_json_body_is_a_server_fault_retried_then_reported(openai_server: OpenAIServer) -> None:
    openai_server.script([Raw()] * 3)
    with pytest.raises(EndpointError, match=r"failed 3 time\(s\); last: the reply is not JSON \(starts '<html>"):
        client_for(openai_server, max_retries=3).complete(MESSAGES)
    assert len(openai_server.chat_requests) == 3


def test_non_json_body_then_a_reply_succeeds(openai_server: OpenAIServer) -> None:
    openai_server.script([Raw(), Reply(content="ok")])
    assert client_for(openai_server).complete(MESSAGES).content == "ok"


def test_completion_without_choices_is_a_server_fault(openai_server: OpenAIServer) -> None:
    openai_server.script([NO_CHOICES] * 2)
    with pytest.raises(EndpointError, match="holds no choices"):
        client_for(openai_server, max_retries=2).complete(MESSAGES)


# -- patience: a time budget for faults that heal ---------------------------------------------------------


class FakeClock:
    """A clock that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def patient_client(
    url: str, clock: FakeClock, waits: list[EndpointWait] | None = None, **changes: object
) -> ModelClient:
    """A client limited by patience alone (no cap on tries), on a fake clock."""
    settings = replace(ModelSettings(base_url=url, api_key=KEY, model="test-model", timeout_s=2.0), **changes)
    return ModelClient(
        settings,
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(3),
        on_wait=waits.append if waits is not None else None,
    )


def test_the_default_settings_wait_out_a_server_restart(openai_server: OpenAIServer) -> None:
    # Five tries with doubling delays gave up on a server down for longer than their sum; patience waits it out.
    openai_server.script([Reply(content="back")])
    openai_server.down_for(1.5)
    settings = ModelSettings(
        base_url=openai_server.base_url, api_key=KEY, model="test-model", retry_base_s=0.05, retry_max_s=0.2
    )
    started = time.monotonic()
    completion = ModelClient(settings).complete(MESSAGES)
    assert completion.content == "back"
    assert completion.attempts > 5 and time.monotonic() - started >= 1.5


def test_healable_faults_are_retried_until_the_patience_is_spent_then_one_line_says_so() -> None:
    clock = FakeClock()
    with pytest.raises(EndpointError) as caught:
        patient_client(closed_port_url(), clock, patience_s=600.0, retry_max_s=30.0).complete(MESSAGES)
    message = str(caught.value)
    assert sum(clock.sleeps) == pytest.approx(600.0)  # the last wait is cut to what patience has left
    assert len(clock.sleeps) > 20
    assert (
        f"failed {len(clock.sleeps) + 1} time(s) over 10m "
        "(endpoint patience 10m, --endpoint-patience / OPENAI_PATIENCE)" in message
    )
    assert message.endswith("last: connection refused") and "\n" not in message


def test_each_wait_is_reported_with_the_patience_left(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(503, "Loading model"), Fault(502, "bad gateway"), Reply(content="ok")])
    clock, waits = FakeClock(), []
    completion = patient_client(openai_server.base_url, clock, waits, patience_s=100.0, retry_base_s=4.0).complete(
        MESSAGES
    )
    assert completion.content == "ok"
    assert [(w.problem, w.tries) for w in waits] == [("HTTP 503: Loading model", 1), ("HTTP 502: bad gateway", 2)]
    assert [w.retry_in_s for w in waits] == clock.sleeps
    assert waits[0].patience_left_s == pytest.approx(100.0)
    assert waits[1].patience_left_s == pytest.approx(100.0 - clock.sleeps[0])


def test_a_client_error_stops_at_once_however_much_patience_is_left(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(503), Fault(400, "bad request"), Reply(content="never")])
    clock = FakeClock()
    with pytest.raises(EndpointError, match="400 bad request"):
        patient_client(openai_server.base_url, clock, patience_s=3600.0).complete(MESSAGES)
    assert len(openai_server.chat_requests) == 2 and len(clock.sleeps) == 1


def test_zero_patience_stops_at_the_first_fault(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(503), Reply(content="never")])
    with pytest.raises(EndpointError, match=r"failed 1 time\(s\) over 0s"):
        patient_client(openai_server.base_url, FakeClock(), patience_s=0.0).complete(MESSAGES)


# -- the deadline: a whole reply within OPENAI_TIMEOUT -----------------------------------------------------


def test_a_reply_trickled_past_the_deadline_is_cut_at_the_deadline(openai_server: OpenAIServer) -> None:
    # One byte every 30 ms never trips a 0.5 s read timeout; only a deadline on the whole reply stops it.
    openai_server.script([Trickle(0.03)] * 2)
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"no answer within 0.5 s .*OPENAI_TIMEOUT") as caught:
        client_for(openai_server, model="test-model", timeout_s=0.5, max_retries=2).complete(MESSAGES)
    assert time.monotonic() - started < 1.5
    assert caught.value.deadline_hit
    assert len(openai_server.chat_requests) == 2


def test_a_deadline_hit_then_a_reply_is_counted_in_the_completion(openai_server: OpenAIServer) -> None:
    openai_server.script([Trickle(0.03), Reply(content="ok")])
    completion = client_for(openai_server, model="test-model", timeout_s=0.5).complete(MESSAGES)
    assert (completion.content, completion.attempts, completion.deadline_hits) == ("ok", 2, 1)


def test_a_reply_within_the_deadline_has_no_deadline_hits(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content="ok")])
    assert client_for(openai_server, model="test-model").complete(MESSAGES).deadline_hits == 0


def test_the_model_list_has_a_deadline_too(openai_server: OpenAIServer) -> None:
    openai_server.script_models([Trickle(0.03)] * 2)
    started = time.monotonic()
    with pytest.raises(EndpointError, match="no answer within 0.5 s"):
        client_for(openai_server, timeout_s=0.5, max_retries=2).list_models()
    assert time.monotonic() - started < 1.5


# -- errors that are not retried -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(400, "This model's maximum context length is 4096 tokens."), r"400 bad request from .*maximum context"),
        (Fault(401, "Incorrect API key provided."), r"401 unauthorized at http://127\.0\.0\.1:\d+/v1: check OPENAI"),
        (Fault(403, "Project does not have access"), r"403 forbidden at .*Project does not have access"),
        (Fault(422, "unprocessable"), r"HTTP 422 from .*unprocessable"),
        (Fault(429, "You exceeded your quota", code="insufficient_quota"), r"429 quota exhausted .*billing"),
    ],
)
def test_client_errors_fail_at_once_with_one_clear_line(
    openai_server: OpenAIServer, fault: Fault, expected: str
) -> None:
    openai_server.script([fault, Reply(content="never")])
    with pytest.raises(EndpointError, match=expected) as caught:
        client_for(openai_server, model="test-model").complete(MESSAGES)
    assert len(openai_server.chat_requests) == 1
    assert "\n" not in str(caught.value)


def test_unknown_model_names_the_listed_ones(openai_server: OpenAIServer) -> None:
    openai_server.models = [{"id": "qwen3-32b"}, {"id": "gemma-4-31b"}]
    openai_server.script([Fault(404, "The model `nope` does not exist.")])
    with pytest.raises(EndpointError) as caught:
        client_for(openai_server, model="nope").complete(MESSAGES)
    assert str(caught.value) == (
        f"model 'nope' not found at {openai_server.base_url}: the server lists: qwen3-32b, gemma-4-31b"
    )
    assert len(openai_server.chat_requests) == 1


def test_404_for_a_listed_model_points_at_the_base_url(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(404, "Not Found")])
    with pytest.raises(EndpointError, match=r"404 at .*/chat/completions \(Not Found\): check OPENAI_BASE_URL"):
        client_for(openai_server, model="test-model").complete(MESSAGES)


def test_connection_refused_is_retried_then_reported() -> None:
    settings = ModelSettings(base_url=closed_port_url(), api_key=KEY, model="m", max_retries=3, retry_base_s=0.001)
    with pytest.raises(EndpointError, match=r"failed 3 time\(s\); last: connection refused"):
        ModelClient(settings).complete(MESSAGES)


def test_preflight_on_a_closed_port_says_how_to_start_a_server() -> None:
    url = closed_port_url()
    with pytest.raises(EndpointError) as caught:
        preflight(ModelSettings(base_url=url, api_key=KEY), prompt_chars=1000)
    message = str(caught.value)
    assert message.startswith(f"cannot reach {url} (connection refused): start your server (vLLM: `vllm serve")
    assert message.endswith("or set OPENAI_BASE_URL")


# -- the reply -------------------------------------------------------------------------------------------


def test_empty_content_is_returned_not_raised(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content=""), Reply(content=None)])
    client = client_for(openai_server)
    assert client.complete(MESSAGES).content == ""
    assert client.complete(MESSAGES).content == ""
    assert len(openai_server.chat_requests) == 2


def test_lone_surrogate_escapes_in_a_reply_become_replacement_characters(openai_server: OpenAIServer) -> None:
    # JSON may escape half of a surrogate pair (a multi-byte character cut by the server); such a str cannot be
    # written as UTF-8, so the reply file, the record and the journal would all fail with UnicodeEncodeError.
    openai_server.script([Reply(content="Hypothesis \ud83d RSI \U0001f600", reasoning_content="plan \udc00")])
    completion = client_for(openai_server).complete(MESSAGES)
    assert completion.content == "Hypothesis \ufffd RSI \U0001f600"
    assert completion.reasoning == "plan \ufffd"
    completion.content.encode("utf-8")
    completion.reasoning.encode("utf-8")


def test_finish_reason_length_is_surfaced(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content="```python\ndef gen", finish_reason="length")])
    assert client_for(openai_server).complete(MESSAGES).finish_reason == "length"


def test_think_tags_are_stripped_into_reasoning(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content="<think>try RSI</think>\n\nHere it is."), Reply(content="plan\n</think>\nok")])
    client = client_for(openai_server)
    first, second = client.complete(MESSAGES), client.complete(MESSAGES)
    assert (first.content, first.reasoning) == ("Here it is.", "try RSI")
    assert (second.content, second.reasoning) == ("ok", "plan")


def test_reasoning_fields_never_become_content(openai_server: OpenAIServer) -> None:
    code = "```python\ndef strategy_logic(row):\n    return 1\n```"
    openai_server.script([Reply(content="", reasoning_content=code), Reply(content="answer", reasoning="thinking")])
    client = client_for(openai_server)
    first, second = client.complete(MESSAGES), client.complete(MESSAGES)
    assert (first.content, first.reasoning) == ("", code)
    assert (second.content, second.reasoning) == ("answer", "thinking")


def test_usage_from_the_server_is_used_as_is(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content="ok", usage=(1234, 56))])
    completion = client_for(openai_server).complete(MESSAGES)
    assert (completion.prompt_tokens, completion.completion_tokens, completion.usage_estimated) == (1234, 56, False)
    assert completion.latency_s > 0
    assert completion.model == "test-model"


def test_usage_is_estimated_and_marked_when_omitted(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content="y" * 80, reasoning_content="z" * 20, usage=None)])
    completion = client_for(openai_server).complete(MESSAGES)
    prompt_chars = sum(len(m["content"]) for m in MESSAGES)
    assert completion.usage_estimated
    assert completion.prompt_tokens == -(-prompt_chars // 4)
    assert completion.completion_tokens == 25


# -- the request -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-5", "gpt-5-mini", "o3", "o4-mini", "o1", "openai/gpt-5.1"])
def test_openai_reasoning_models_get_max_completion_tokens_and_no_temperature(
    openai_server: OpenAIServer, model: str
) -> None:
    openai_server.script([Reply(content="ok")])
    client_for(openai_server, model=model, max_tokens=900, temperature=0.3).complete(MESSAGES)
    body = openai_server.chat_requests[0].body
    assert body["max_completion_tokens"] == 900
    assert "max_tokens" not in body and "temperature" not in body


@pytest.mark.parametrize("model", ["qwen3-32b", "Qwen/Qwen3-30B-A3B", "gpt-4o", "ollama/o3-mini-clone-x", "devstral"])
def test_other_models_get_max_tokens_and_temperature(openai_server: OpenAIServer, model: str) -> None:
    expected_reasoning = model == "ollama/o3-mini-clone-x"  # the id after the prefix decides
    assert is_openai_reasoning_model(model) is expected_reasoning
    if expected_reasoning:
        return
    openai_server.script([Reply(content="ok")])
    client_for(openai_server, model=model, max_tokens=900, temperature=0.3).complete(MESSAGES)
    body = openai_server.chat_requests[0].body
    assert (body["max_tokens"], body["temperature"]) == (900, 0.3)
    assert "max_completion_tokens" not in body


def test_unset_options_are_not_sent(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content="ok")])
    client_for(openai_server).complete(MESSAGES)
    body = openai_server.chat_requests[0].body
    # Every completion streams, asking for usage in the last chunk; nothing else is sent unless configured.
    assert set(body) == {"model", "messages", "stream", "stream_options"}
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})
    assert body["messages"] == MESSAGES


def test_extra_body_is_sent_only_when_configured(openai_server: OpenAIServer) -> None:
    extra = {"chat_template_kwargs": {"enable_thinking": False}, "top_k": 20}
    openai_server.script([Reply(content="ok")])
    client_for(openai_server, extra_body=extra).complete(MESSAGES)
    body = openai_server.chat_requests[0].body
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["top_k"] == 20


def test_the_api_key_is_sent_as_a_bearer_token(openai_server: OpenAIServer) -> None:
    openai_server.api_key = KEY
    openai_server.script([Reply(content="ok")])
    client_for(openai_server).complete(MESSAGES)
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in openai_server.requests)


# -- models and preflight --------------------------------------------------------------------------------


def test_the_only_listed_model_is_used_when_none_is_configured(openai_server: OpenAIServer) -> None:
    openai_server.models = [{"id": "Qwen/Qwen3-32B", "max_model_len": 40960}]
    openai_server.script([Reply(content="ok")])
    client_for(openai_server).complete(MESSAGES)
    assert openai_server.chat_requests[0].body["model"] == "Qwen/Qwen3-32B"


def test_several_models_and_none_configured_lists_the_choices(openai_server: OpenAIServer) -> None:
    openai_server.models = [{"id": "a"}, {"id": "b"}]
    with pytest.raises(ConfigError, match=r"2 models at http://127\.0\.0\.1:\d+/v1 \(a, b\): set OPENAI_MODEL"):
        client_for(openai_server).complete(MESSAGES)
    assert openai_server.chat_requests == []


@pytest.mark.parametrize(
    ("entry", "context"),
    [
        ({"id": "m", "object": "model", "owned_by": "vllm", "max_model_len": 40960}, 40960),  # vLLM
        ({"id": "m", "owned_by": "llamacpp", "meta": {"n_ctx_train": 131072, "n_vocab": 1}}, 131072),  # llama.cpp
        ({"id": "m", "context_length": 200000}, 200000),  # OpenRouter
        ({"id": "m", "max_context_length": 32768, "loaded_context_length": 8192}, 8192),  # LM Studio
        ({"id": "m", "object": "model", "owned_by": "library"}, None),  # Ollama
    ],
)
def test_context_length_is_read_from_the_model_list(
    openai_server: OpenAIServer, entry: dict, context: int | None
) -> None:
    openai_server.models = [entry]
    assert client_for(openai_server).list_models()[0].context_length == context


def test_llama_cpp_served_context_comes_from_props(openai_server: OpenAIServer) -> None:
    openai_server.models = [{"id": "model.gguf", "meta": {"n_ctx_train": 131072}}]
    openai_server.props = {"default_generation_settings": {"n_ctx": 16384}, "total_slots": 1}
    assert client_for(openai_server).list_models()[0].context_length == 16384


def test_model_list_while_loading_is_retried(openai_server: OpenAIServer) -> None:
    openai_server.script_models([Fault(503, "Loading model"), Fault(503, "Loading model")])
    assert [m.id for m in client_for(openai_server).list_models()] == ["test-model"]
    assert len(openai_server.requests) == 3


def test_preflight_reports_model_context_and_prompt_size(openai_server: OpenAIServer) -> None:
    report = preflight(settings_for(openai_server, max_tokens=4000), prompt_chars=40_000)
    assert (report.model, report.context_length, report.prompt_tokens, report.max_tokens) == (
        "test-model",
        32768,
        10_000,
        4000,
    )
    assert report.warnings == ()


def test_preflight_refuses_a_prompt_that_cannot_fit(openai_server: OpenAIServer) -> None:
    openai_server.models = [{"id": "small", "max_model_len": 8192}]
    with pytest.raises(ConfigError) as caught:
        preflight(settings_for(openai_server, max_tokens=4096), prompt_chars=20_000)
    assert str(caught.value).startswith(
        "the prompt (~5000 tokens) plus max tokens (4096) needs 9096 tokens but 'small' at "
    )
    assert "--max-model-len" in str(caught.value)


def test_preflight_names_the_listed_models_when_the_configured_one_is_missing(openai_server: OpenAIServer) -> None:
    with pytest.raises(ConfigError, match=r"model 'qwen' not found at .*: the server lists: test-model; set OPENAI"):
        preflight(settings_for(openai_server, model="qwen"), prompt_chars=100)


def test_preflight_accepts_ollama_latest_tag(openai_server: OpenAIServer) -> None:
    openai_server.models = [{"id": "qwen3:latest", "owned_by": "library"}]
    report = preflight(settings_for(openai_server, model="qwen3"), prompt_chars=100)
    assert report.context_length is None
    assert "does not report its context size" in report.warnings[0]


def test_preflight_without_v1_in_the_url_says_so(openai_server: OpenAIServer) -> None:
    settings = settings_for(openai_server, base_url=openai_server.base_url.removesuffix("/v1"))
    with pytest.raises(EndpointError, match=r"no model list at .*/models \(404\): OPENAI_BASE_URL .* /v1"):
        preflight(settings, prompt_chars=100)


def test_preflight_with_a_wrong_key_says_which_variable(openai_server: OpenAIServer) -> None:
    openai_server.api_key = "the-right-key"
    with pytest.raises(EndpointError, match="401 unauthorized at .*: check OPENAI_API_KEY"):
        preflight(settings_for(openai_server), prompt_chars=100)
    assert len(openai_server.requests) == 1


# -- the key stays secret --------------------------------------------------------------------------------


def test_api_key_is_absent_from_reprs(openai_server: OpenAIServer) -> None:
    settings = settings_for(openai_server)
    client = ModelClient(settings)
    assert KEY not in repr(settings) and KEY not in str(settings)
    assert KEY not in repr(client)


def test_api_key_echoed_by_the_server_is_scrubbed_from_errors(openai_server: OpenAIServer) -> None:
    openai_server.script([Fault(401, f"Incorrect API key provided: {KEY}."), Fault(500, f"key {KEY}")])
    client = client_for(openai_server, max_retries=1)
    for _ in range(2):
        with pytest.raises(EndpointError) as caught:
            client.complete(MESSAGES)
        assert KEY not in str(caught.value)
        assert "***" in str(caught.value)


# -- the loopback server itself --------------------------------------------------------------------------


def test_a_used_up_script_fails_fast_with_a_clear_line(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content="only one")])
    client = client_for(openai_server)
    client.complete(MESSAGES)
    with pytest.raises(EndpointError, match="loopback script exhausted"):
        client.complete(MESSAGES)
    assert len(openai_server.chat_requests) == 2


def test_a_callable_step_answers_from_the_request(openai_server: OpenAIServer) -> None:
    openai_server.script([lambda request: Reply(content=f"{len(request.body['messages'])} messages")])
    assert client_for(openai_server).complete(MESSAGES).content == "2 messages"
