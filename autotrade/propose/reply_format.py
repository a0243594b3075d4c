"""The reply formats a run may ask for: `text` (a ```python and a ```markdown block) or `json` (one JSON object).

The JSON form is defined here alone: the schema the client sends as `response_format` (the server then constrains
the answer to it), the prompt section that tells the model the form, and the reading of a reply against it (the
parser, the early stop and the doctor's probe all use it). Only the answer (content) is ever read as JSON: reasoning
streamed in its own field stays free text, and a JSON object found there is reported, never taken as code.
"""

from __future__ import annotations

import json
import re
from typing import Any

from autotrade.contract import SIGNATURES
from autotrade.errors import ReplyError

TEXT = "text"
JSON = "json"
REPLY_FORMATS = (TEXT, JSON)
JSON_KEYS = ("hypothesis", "code")
SCHEMA_NAME = "strategy_reply"
JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {key: {"type": "string"} for key in JSON_KEYS},
    "required": list(JSON_KEYS),
    "additionalProperties": False,
}
JSON_FORMAT_HINT = (
    'reply with only a JSON object {"hypothesis": "...", "code": "..."} whose "code" string defines ' + SIGNATURES
)
# The shape of "code" as the model must write it: JSON-escaped (a backslash and an n, not a line break).
_CODE_SHAPE = r"def generate_features(df):\n    ...\n    return df\n\n\ndef strategy_logic(row):\n    ...\n    return 0"
# Appended to the rendered prompt, so a run's pinned program and template need no edit (and a text run's prompt
# stays byte for byte what it was); it overrides the templates' closing line about markdown blocks.
JSON_INSTRUCTIONS = f"""## Reply format: one JSON object
This run reads your reply as JSON, not as markdown blocks: disregard any instruction above to reply with ```python \
and ```markdown blocks. Reply with only one JSON object, nothing before or after it, shaped like this (your own \
hypothesis and your complete code in place of the dots):
{{"hypothesis": "<your hypothesis, a few sentences>", "code": "{_CODE_SHAPE}"}}
"code" holds the Python source that defines {SIGNATURES}, as a JSON string: its newlines written as \\n and its \
double quotes as \\", with no ``` fences inside it.
"""
PROBE_PROMPT = (
    'Reply with only a JSON object {"hypothesis": "...", "code": "..."}: "hypothesis" is one short sentence, '
    '"code" is the Python source of a function `generate_features(df)` that returns df unchanged.'
)
# A server that ignores response_format may wrap the object in a fence; what follows the object is not read.
_LEADING_FENCE = re.compile(r"^(?:`{3,}|~{3,})[ \t]*(?:json)?[ \t]*\n", re.I)


def response_format(reply_format: str) -> dict[str, Any] | None:
    """The `response_format` request option of a reply format; None for text (nothing is sent)."""
    if reply_format != JSON:
        return None
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "schema": JSON_SCHEMA, "strict": True}}


def with_reply_format(prompt: str, reply_format: str) -> str:
    """The rendered prompt with the reply format's instructions; a text run's prompt unchanged."""
    return prompt if reply_format != JSON else prompt + "\n" + JSON_INSTRUCTIONS


def decode_object(content: str) -> tuple[Any, str] | None:
    """The JSON value at the start of the content (a leading fence skipped) and the text after it; None when the
    content does not start with a whole JSON object."""
    text = _LEADING_FENCE.sub("", content.strip(), count=1)
    if not text.startswith("{"):
        return None
    try:
        # strict=False: models often put raw newlines inside JSON strings
        value, end = json.JSONDecoder(strict=False).raw_decode(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder allows
        return None
    return value, text[end:]


def json_reply(content: str, *, exact: bool = False) -> dict[str, Any]:
    """The reply's JSON object, with a string for each of JSON_KEYS; ReplyError(parse_error) saying what is wrong.

    `exact` (the doctor's check that the server's constraint held): the content is the object and nothing else,
    and the object has no other key."""
    decoded = decode_object(content)
    if decoded is None or not isinstance(decoded[0], dict):
        start = " ".join(content.split())[:80]
        raise ReplyError(f"the reply is not a JSON object (it starts {start!r})")
    payload, rest = decoded
    for key in JSON_KEYS:
        if key not in payload:
            raise ReplyError(f'the JSON reply has no "{key}" key')
        if not isinstance(payload[key], str):
            kind = "null" if payload[key] is None else type(payload[key]).__name__
            raise ReplyError(f'the JSON reply\'s "{key}" is {kind}, not a string')
    if exact:
        extra = sorted(set(payload) - set(JSON_KEYS))
        if extra:
            raise ReplyError(f"the JSON reply has keys outside the schema: {', '.join(extra)}")
        if rest.strip() or not content.strip().startswith("{"):
            raise ReplyError("the JSON object is not the whole reply (a fence or text around it)")
    return payload


def holds_json_reply(text: str) -> bool:
    """True when the text (a reasoning field) holds an object with a JSON_KEYS key from its first `{` on: a server
    that routed the constrained answer into the reasoning field, or applied the schema to the thinking."""
    start = text.find("{")
    decoded = decode_object(text[start:]) if start >= 0 else None
    return decoded is not None and isinstance(decoded[0], dict) and bool(set(decoded[0]) & set(JSON_KEYS))
