"""Streamed completions: the client reads server-sent events and stops once the reply is complete."""

from __future__ import annotations

import time

import pytest
from openai_server import HTML_STREAM, NO_CHOICE_STREAM, Fault, OpenAIServer, Raw, Recorded, Reply, Step, Trickle
from test_llm import MESSAGES, client_for

from autotrade.errors import EndpointError
from autotrade.propose.client import estimate_tokens
from autotrade.propose.reply import EARLY_STOP_TAIL_CHARS, parse_reply

CODE = (
    "```python\n"
    'def generate_features(df):\n    df["RSI"] = df["Close"].diff()\n    return df\n\n\n'
    'def strategy_logic(row):\n    return 1 if row["RSI"] > 0 else -1\n'
    "```\n"
)
HYPOTHESIS = "```markdown\nRising RSI means momentum.\n```\n"
RAMBLE = "Next I might try a moving average crossover, or volatility bands, or both at once.\n" * 2000


def ended(request: Recorded) -> Recorded:
    """The request once the server has stopped sending to it (it notices a closed connection at its next write)."""
    assert request.sent.ended.wait(5), "the server is still sending"
    return request


def test_reading_stops_once_python_and_markdown_blocks_are_closed(openai_server: OpenAIServer) -> None:
    reply = "Here it is.\n" + CODE + HYPOTHESIS + RAMBLE
    openai_server.script([Reply(content=reply)])
    completion = client_for(openai_server).complete(MESSAGES)
    assert completion.early_stop == "python and markdown blocks closed"
    assert completion.finish_reason == "early_stop"
    assert RAMBLE[:200] not in completion.content
    assert parse_reply(completion.content, "", completion.finish_reason) == parse_reply(reply, "", "stop")


def test_reading_stops_after_prose_past_a_closed_python_block(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content=CODE + RAMBLE)])
    completion = client_for(openai_server).complete(MESSAGES)
    assert completion.early_stop == f"{EARLY_STOP_TAIL_CHARS} characters of prose after a closed python block"
    assert completion.finish_reason == "early_stop"
    assert len(CODE) + EARLY_STOP_TAIL_CHARS <= completion.received_chars < len(CODE) + 2 * EARLY_STOP_TAIL_CHARS


def test_a_reply_that_ends_with_its_blocks_is_read_to_its_end(openai_server: OpenAIServer) -> None:
    # Complete at its last newline, but nothing follows: its finish_reason and usage are read as sent.
    openai_server.script([Reply(content=CODE + HYPOTHESIS, usage=(1234, 56))])
    completion = client_for(openai_server).complete(MESSAGES)
    assert (completion.early_stop, completion.finish_reason) == (None, "stop")
    assert (completion.completion_tokens, completion.usage_estimated) == (56, False)
    assert ended(openai_server.chat_requests[0]).sent.client_gone is False


def test_no_early_stop_while_a_block_is_still_open(openai_server: OpenAIServer) -> None:
    reply = CODE + "```markdown\n" + RAMBLE[:5000] + "```"
    openai_server.script([Reply(content=reply)])
    completion = client_for(openai_server).complete(MESSAGES)
    assert (completion.early_stop, completion.finish_reason) == (None, "stop")
    assert completion.content == reply
    assert completion.received_chars == len(reply)


def test_reasoning_deltas_are_kept_apart_and_never_stop_the_stream(openai_server: OpenAIServer) -> None:
    thought = "Draft:\n" + CODE + HYPOTHESIS + RAMBLE[:2000]
    openai_server.script([Reply(content=CODE + HYPOTHESIS, reasoning_content=thought)])
    completion = client_for(openai_server).complete(MESSAGES)
    assert completion.reasoning == thought.strip()
    assert completion.content == (CODE + HYPOTHESIS).strip()
    assert completion.early_stop is None and completion.finish_reason == "stop"  # the content stream ended first
    assert ended(openai_server.chat_requests[0]).sent.client_gone is False


def test_reasoning_in_think_tags_never_stops_the_stream(openai_server: OpenAIServer) -> None:
    thought = "<think>\nDraft:\n" + CODE + HYPOTHESIS + RAMBLE[:2000] + "</think>\n"
    openai_server.script([Reply(content=thought + "Final:\n" + CODE + HYPOTHESIS)])
    completion = client_for(openai_server).complete(MESSAGES)
    assert completion.reasoning.startswith("Draft:") and completion.content.startswith("Final:")
    assert completion.early_stop is None and completion.finish_reason == "stop"


def test_newer_vllm_reasoning_deltas_are_kept_apart(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content="answer", reasoning="thinking " * 10)])
    completion = client_for(openai_server).complete(MESSAGES)
    assert (completion.content, completion.reasoning) == ("answer", ("thinking " * 10).strip())


def test_usage_comes_from_the_final_chunk(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content="ok " * 50, usage=(1234, 56))])
    completion = client_for(openai_server).complete(MESSAGES)
    assert (completion.prompt_tokens, completion.completion_tokens, completion.usage_estimated) == (1234, 56, False)
    assert openai_server.chat_requests[0].body["stream_options"] == {"include_usage": True}


def test_a_server_refusing_stream_options_is_asked_without_them_from_then_on(openai_server: OpenAIServer) -> None:
    def picky(request: Recorded) -> Step:
        if "stream_options" in request.body:
            return Fault(400, "Unrecognized request argument supplied: stream_options")
        return Reply(content="ok", usage=None)

    openai_server.script([picky, picky, picky])
    client = client_for(openai_server)
    first, second = client.complete(MESSAGES), client.complete(MESSAGES)
    assert (first.content, second.content) == ("ok", "ok")
    assert first.usage_estimated  # no usage chunk without stream_options
    assert ["stream_options" in r.body for r in openai_server.chat_requests] == [True, False, False]


def test_usage_is_estimated_when_stopped_early(openai_server: OpenAIServer) -> None:
    openai_server.script([Reply(content=CODE + HYPOTHESIS + RAMBLE, usage=(1234, 56))])
    completion = client_for(openai_server).complete(MESSAGES)
    assert completion.early_stop is not None
    assert completion.usage_estimated
    assert completion.completion_tokens == estimate_tokens(completion.received_chars)
    assert completion.prompt_tokens == estimate_tokens(sum(len(m["content"]) for m in MESSAGES))


def test_early_stop_closes_the_connection_and_the_server_stops_sending(openai_server: OpenAIServer) -> None:
    # The ramble alone would take 168000 / 16 deltas * 5 ms = 52 s; the stop must come at the blocks' end.
    reply = CODE + HYPOTHESIS + RAMBLE
    openai_server.script([Trickle(0.005, Reply(content=reply))])
    started = time.monotonic()
    completion = client_for(openai_server, timeout_s=30.0).complete(MESSAGES)
    assert time.monotonic() - started < 5.0
    assert completion.early_stop == "python and markdown blocks closed"
    sent = ended(openai_server.chat_requests[0]).sent
    assert sent.client_gone
    assert sent.content_chars < len(CODE + HYPOTHESIS) + 1000  # a few deltas past the stop, not the ramble


def test_a_stream_that_ends_without_any_choice_is_retried_as_a_server_fault(openai_server: OpenAIServer) -> None:
    openai_server.script([NO_CHOICE_STREAM, Reply(content="ok")])
    completion = client_for(openai_server).complete(MESSAGES)
    assert (completion.content, completion.attempts) == ("ok", 2)
    openai_server.script([NO_CHOICE_STREAM] * 2)
    with pytest.raises(EndpointError, match=r"failed 2 time\(s\); last: the reply holds no choices"):
        client_for(openai_server, max_retries=2).complete(MESSAGES)


def test_stream_data_that_is_not_json_is_a_server_fault(openai_server: OpenAIServer) -> None:
    openai_server.script([HTML_STREAM] * 2)
    with pytest.raises(EndpointError, match=r"failed 2 time\(s\); last: the reply is not JSON \(starts '<html>"):
        client_for(openai_server, max_retries=2).complete(MESSAGES)


def test_an_error_event_in_a_stream_is_a_server_fault(openai_server: OpenAIServer) -> None:
    error = Raw(body='data: {"error": {"message": "out of memory"}}\n\n', content_type="text/event-stream")
    openai_server.script([error] * 2)
    with pytest.raises(EndpointError, match=r"last: the server answered an error: out of memory"):
        client_for(openai_server, max_retries=2).complete(MESSAGES)


def test_a_server_that_ignores_stream_is_read_as_one_completion(openai_server: OpenAIServer) -> None:
    body = '{"model": "m", "choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]}'
    openai_server.script([Raw(body=body, content_type="application/json")])
    completion = client_for(openai_server).complete(MESSAGES)
    assert (completion.content, completion.finish_reason, completion.early_stop) == ("whole", "stop", None)


def test_the_deadline_covers_a_trickling_stream(openai_server: OpenAIServer) -> None:
    # Each event arrives well within any read timeout; only the deadline on the whole answer ends the request.
    openai_server.script([Trickle(0.05, Reply(content="slow " * 100))])
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"no answer within 0.5 s") as caught:
        client_for(openai_server, timeout_s=0.5, max_retries=1).complete(MESSAGES)
    assert time.monotonic() - started < 1.5 and caught.value.deadline_hit
    sent = ended(openai_server.chat_requests[0]).sent
    assert sent.events > 0 and sent.client_gone  # the stream had begun, and the abandoned request closed it
