"""Parsing a model's reply into an agent block and its learnings; never takes code from reasoning.

The rules, in order:
1. A reply cut at the token limit (`finish_reason == "length"`) is salvaged from its CLOSED blocks only: an
   unclosed fence ends where the cut fell (its code may stop mid-function) and bare code has no end to see, so
   neither is a candidate. The whole-reply JSON form counts when it parses, a ```json block when its fence closed.
   Past MAX_REPLY_CHARS the cut reply is read only up to the last line break before that limit (it is cut anyway,
   and a block closed further on would have been refused for size). No usable closed block → ReplyError
   "truncated"; every rule below otherwise applies as it does to a reply that ended on its own.
2. Reasoning is removed first: `<think>…</think>` (or `<thinking>`), the text before a lone `</think>`
   (chat templates that open the tag in the prompt), and everything after an unclosed `<think>`.
   Nothing left → ReplyError "empty". More than MAX_REPLY_CHARS left → ReplyError "parse_error", before
   any parsing (parsing megabytes of code takes seconds and gigabytes; no block may be that long anyway).
3. A reply that is a JSON object with `generate_features` / `strategy_logic` (/ `learnings`) strings is
   used as is. Otherwise fenced blocks (``` or ~~~, indented too as in list items, CRLF tolerated, an
   unclosed last fence accepted) labelled python/py/python3 or unlabelled are candidates, and so are
   ```json blocks holding that object; the LAST candidate that defines at least one of the two
   functions at top level wins.
   "Defines" is read with `ast`; a block that does not parse falls back to a `^def name(` match, so its
   SyntaxError reaches vetting (and the model) instead of becoming a vague "no code".
   With no fence at all, a reply that parses as Python and defines a function is taken whole.
   Nothing found → ReplyError "parse_error".
4. A missing function is filled from the latest earlier block in the same reply that defines it, else
   from the parent: the donor's top-level statements are kept (its helpers and constants too), except
   those whose every bound name the new code redefines; the new code takes the place of the donor's
   definition of the function it replaces. `kept_from_parent` names the functions taken from the parent.
5. Delimiter lines of trade.py copied into a block are cut away (the block sits between them).
6. Learnings: the last ```markdown/```md block (closed, in a cut reply), else the JSON `learnings`, else the
   prose outside fences; trimmed to LEARNINGS_MAX_CHARS.

A run with `--reply-format json` asked for one {"hypothesis", "code"} object (reply_format.py) and reads only that:
the object at the start of the content (text after it is not read: an early stop may leave some), its "code" as
the block (rules 4 and 5 apply), its "hypothesis" as the learnings. A missing key or a value that is not a string
is a parse_error naming the key. A reply whose content is empty while its reasoning field holds the object is a
parse_error saying so: reasoning is never read as code.

`reply_complete` reads a reply still being streamed by the same rules, so the client can stop reading once the
reply holds what the format asks for (a model that rambles on to its token limit costs minutes per reply); a reply
stopped there is parsed like one that ended on its own (finish_reason "early_stop").
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from dataclasses import dataclass

from autotrade.contract import BLOCK_END, BLOCK_START, FUNCTIONS, SIGNATURES
from autotrade.errors import ReplyError
from autotrade.propose.reply_format import JSON, JSON_FORMAT_HINT, TEXT, decode_object, holds_json_reply, json_reply
from autotrade.sandbox.vet import MAX_BLOCK_CHARS

CODE_LABELS = frozenset({"", "python", "py", "python3", "py3"})
MARKDOWN_LABELS = frozenset({"markdown", "md"})
LEARNINGS_MAX_CHARS = 2000
# A reply outside its reasoning: the longest block vetting accepts, with ample room for prose and learnings.
MAX_REPLY_CHARS = 4 * MAX_BLOCK_CHARS

FORMAT_HINT = (
    f"reply with one ```python block that defines {SIGNATURES}, then one ```markdown block with your hypothesis"
)
# Prose this long after the last block, a closed code block, means the model has moved on from the reply format.
EARLY_STOP_TAIL_CHARS = 400
REASONING_JSON_MESSAGE = (
    "the reply's content was empty and its reasoning field held the JSON object: the server applied the schema to "
    "the thinking or sent the answer as reasoning, which is never read as code (see `autotrade doctor "
    "--reply-format json`; run this model with --reply-format text, or turn its thinking off)"
)
TRUNCATED_MESSAGE = "the reply was cut off at the token limit (finish_reason=length): think more briefly and "

_THINK_OPEN = re.compile(r"<(think|thinking)>", re.I)
_THINK_CLOSE = re.compile(r"</(think|thinking)>", re.I)
_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$")
_DEF_LINE = re.compile(r"^(?:async[ \t]+)?def[ \t]+(\w+)[ \t]*\(", re.M)
_ASSIGN_LINE = re.compile(r"^([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=)", re.M)


@dataclass(frozen=True)
class ParsedReply:
    """What a reply yields: the agent block to vet, the model's hypothesis, and where the code came from."""

    block: str
    learnings: str
    source: str  # "python-block", "json" or "bare" (a reply that is only code)
    kept_from_parent: tuple[str, ...] = ()  # functions the reply left out, taken from the parent


@dataclass(frozen=True)
class _Fence:
    label: str
    text: str
    start: int  # first line index of the opening fence
    end: int  # line index after the closing fence (or after the last line when unclosed)
    closed: bool = True  # False: the reply ended inside it


@dataclass(frozen=True)
class _Candidate:
    code: str
    names: frozenset[str]  # every top-level name the code binds
    source: str
    learnings: str = ""


def split_reasoning(text: str | None) -> tuple[str, str]:
    """Split a message into (content, reasoning) by its think tags; content is stripped."""
    if not text:
        return "", ""
    reasoning: list[str] = []
    close, opening = _THINK_CLOSE.search(text), _THINK_OPEN.search(text)
    if close and (opening is None or close.start() < opening.start()):
        # The template opened the tag in the prompt: all text before the first `</think>` is reasoning.
        reasoning.append(text[: close.start()])
        text = text[close.end() :]

    text = _take_pairs(text, reasoning)
    unclosed = _THINK_OPEN.search(text)
    if unclosed:
        # The reply ended while still thinking: nothing after the tag is an answer.
        reasoning.append(text[unclosed.end() :])
        text = text[: unclosed.start()]
    return text.strip(), "\n\n".join(part.strip() for part in reasoning if part.strip())


def _take_pairs(text: str, reasoning: list[str]) -> str:
    """`text` without its `<think>…</think>` pairs (an opening tag and the first closing tag of its name after it),
    each one's inside appended to `reasoning`.

    In linear time: an opening tag with no closing tag after it is passed over at once, where a lazy regex scanned
    the rest of the text from each one (minutes for a completion of thousands of opening tags, one token each, and
    outside any sandbox's timeout)."""
    last_close = {match.group(1).lower(): match.start() for match in _THINK_CLOSE.finditer(text)}
    kept, done, at = [], 0, 0
    while (opening := _THINK_OPEN.search(text, at)) is not None:
        tag = opening.group(1).lower()
        if last_close.get(tag, -1) < opening.end():
            at = opening.end()
            continue
        close = re.compile(f"</{tag}>", re.I).search(text, opening.end())
        assert close is not None  # last_close holds one after the opening tag
        kept.append(text[done : opening.start()])
        reasoning.append(text[opening.end() : close.start()])
        done = at = close.end()
    return "".join(kept) + text[done:]


def strip_reasoning(text: str | None) -> str:
    """The message without its think-tagged reasoning, stripped."""
    return split_reasoning(text)[0]


def format_hint(reply_format: str) -> str:
    """How to reply in the run's reply format, in one phrase, for the messages a failed reply sends the model."""
    return JSON_FORMAT_HINT if reply_format == JSON else FORMAT_HINT


def reply_complete(text: str, reply_format: str = TEXT) -> str | None:
    """Why a reply still being received is complete by the reply format already, or None while it may not be.

    JSON: the content (outside reasoning) starts with a whole JSON object; more text cannot change what is read.
    Text: every fence is closed, the closed code blocks define both functions between them, and either a
    ```markdown block is closed too (before or after the code) or the last block is code and EARLY_STOP_TAIL_CHARS
    of prose follow it. Only whole lines count (the line being received may still become a fence), and only the
    text outside reasoning: a reply that is complete here parses as it would once the model had gone quiet.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if reply_format == JSON:
        return "JSON object closed" if decode_object(strip_reasoning(text)) is not None else None
    content = strip_reasoning(text[: text.rfind("\n") + 1])
    if not content:
        return None
    lines = content.split("\n")
    fences = _fences(lines)
    if not fences or not all(f.closed for f in fences):
        return None
    names = {name for c in (_candidate(f) for f in fences) if c is not None for name in c.names}
    if not set(FUNCTIONS) <= names:
        return None
    if any(f.label in MARKDOWN_LABELS for f in fences):
        return "python and markdown blocks closed"
    last = fences[-1]
    if _candidate(last) is not None and len("\n".join(lines[last.end :]).strip()) >= EARLY_STOP_TAIL_CHARS:
        return f"{EARLY_STOP_TAIL_CHARS} characters of prose after a closed python block"
    return None


def parse_reply(
    text: str | None,
    parent_block: str,
    finish_reason: str | None = None,
    *,
    reply_format: str = TEXT,
    reasoning: str = "",
) -> ParsedReply:
    """The agent block and learnings of a reply; ReplyError(status empty/parse_error/truncated) otherwise.

    A reply cut at the token limit (finish_reason "length") is read from its closed blocks only; without one it
    is `truncated`, whatever else would have gone wrong with it. `reasoning` (the reasoning field) is only looked
    at to say why a JSON reply's content is empty."""
    cut = finish_reason == "length"
    try:
        if reply_format == JSON:
            return _parse_json(text, reasoning, parent_block)
        return _parse(text, parent_block, cut=cut)
    except ReplyError as exc:
        if not cut:
            raise
        # Empty or codeless because it was cut: the model needs to hear "shorter", not "no code block".
        raise ReplyError(TRUNCATED_MESSAGE + format_hint(reply_format), status="truncated") from exc


def _parse_json(text: str | None, reasoning: str, parent_block: str) -> ParsedReply:
    """A JSON reply's {"hypothesis", "code"} object as a block and learnings (a cut one parses only if it closed)."""
    content = strip_reasoning((text or "").replace("\r\n", "\n").replace("\r", "\n"))
    if not content:
        if holds_json_reply(reasoning):
            raise ReplyError(REASONING_JSON_MESSAGE, status="parse_error")
        raise ReplyError("the reply had no content outside its reasoning: " + JSON_FORMAT_HINT, status="empty")
    if len(content) > MAX_REPLY_CHARS:
        raise ReplyError(
            f"the reply was {len(content):,} characters outside its reasoning; a reply may hold at most "
            f"{MAX_REPLY_CHARS:,}: keep the strategy short and " + JSON_FORMAT_HINT,
            status="parse_error",
        )
    try:
        payload = json_reply(content)
    except ReplyError as exc:
        raise ReplyError(f"{exc}: " + JSON_FORMAT_HINT) from None
    found = _code_candidate(payload["code"], "json", require_parse=False)
    if found is None:
        raise ReplyError('the JSON reply\'s "code" defines neither function: ' + JSON_FORMAT_HINT)
    return _finish(found, [], parent_block, payload["hypothesis"])


def _parse(text: str | None, parent_block: str, *, cut: bool) -> ParsedReply:
    """parse_reply's rules; `cut`: the reply ended at the token limit, so an unclosed or bare block is no code."""
    content = strip_reasoning((text or "").replace("\r\n", "\n").replace("\r", "\n"))
    if cut and len(content) > MAX_REPLY_CHARS:
        # Cut again, at a line break so no partial line can pose as a closing fence: what lies beyond could only
        # be refused for size, and the size guard exists so that it is never parsed.
        content = content[: max(content.rfind("\n", 0, MAX_REPLY_CHARS + 1), 0)].rstrip()
    if not content:
        raise ReplyError("the reply had no content outside its reasoning: " + FORMAT_HINT, status="empty")
    if len(content) > MAX_REPLY_CHARS:
        raise ReplyError(
            f"the reply was {len(content):,} characters outside its reasoning; a reply may hold at most "
            f"{MAX_REPLY_CHARS:,} "
            f"and a block {MAX_BLOCK_CHARS:,}: keep the strategy short and " + FORMAT_HINT,
            status="parse_error",
        )

    whole = _json_candidate(content)  # in a cut reply too: an object that parses whole was closed before the cut
    if whole is not None:
        return _finish(whole, [], parent_block, whole.learnings)

    lines = content.split("\n")
    fences = _fences(lines)
    # An unclosed fence stays a fence (its lines are not prose) but, in a cut reply, neither code nor hypothesis.
    usable = [f for f in fences if f.closed or not cut]
    candidates = [c for c in (_candidate(f) for f in usable) if c is not None]
    if not candidates and not fences and not cut:
        bare = _code_candidate(content, "bare", require_parse=True)
        if bare is not None:
            return _finish(bare, [], parent_block, "")
    if not candidates:
        found = f"{len(fences)} fenced block(s), none defining either function" if fences else "no code block"
        raise ReplyError(f"{found}: " + FORMAT_HINT, status="parse_error")

    markdown = [f.text for f in usable if f.label in MARKDOWN_LABELS]
    learnings = markdown[-1] if markdown else candidates[-1].learnings or _prose(lines, fences)
    return _finish(candidates[-1], candidates[:-1], parent_block, learnings)


def _finish(chosen: _Candidate, earlier: list[_Candidate], parent_block: str, learnings: str) -> ParsedReply:
    """Fill missing functions from earlier blocks, then from the parent; bound the learnings."""
    code, names = chosen.code, set(chosen.names)
    for donor in reversed(earlier):
        if set(FUNCTIONS) <= names:
            break
        if donor.names & (set(FUNCTIONS) - names):
            code = _merge(donor.code, code, names)
            names |= donor.names
    kept: tuple[str, ...] = ()
    missing = [name for name in FUNCTIONS if name not in names]
    if missing and parent_block.strip():
        parent_names = _bound_names(parent_block)
        kept = tuple(name for name in missing if name in parent_names)
        if kept:
            code = _merge(parent_block, code, names)
    return ParsedReply(
        block=code.strip("\n") + "\n",
        learnings=_bounded(learnings),
        source=chosen.source,
        kept_from_parent=kept,
    )


def _fences(lines: list[str]) -> list[_Fence]:
    """Fenced blocks in reading order; an unclosed last fence runs to the end of the reply."""
    fences: list[_Fence] = []
    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if opening is None:
            i += 1
            continue
        marker, label = opening.group(1), opening.group(2).lower()
        closing = re.compile(rf"^[ \t]*{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        fences.append(_Fence(label, "\n".join(lines[i + 1 : j]), i, min(j + 1, len(lines)), closed=j < len(lines)))
        i = j + 1
    return fences


def _candidate(fence: _Fence) -> _Candidate | None:
    """A fenced block as a candidate when it defines either function (code) or holds the JSON object."""
    if fence.label in CODE_LABELS:
        found = _code_candidate(fence.text, "python-block", require_parse=False)
        if found is not None:
            return found
    if fence.label in ("json", ""):
        return _json_candidate(fence.text)
    return None


def _code_candidate(code: str, source: str, *, require_parse: bool) -> _Candidate | None:
    """Code (delimiters cut, dedented) that defines at least one of the two functions at top level."""
    code = textwrap.dedent(_between_delimiters(code)).strip("\n")
    names = _bound_names(code, allow_regex=not require_parse)
    if names is None or not names & set(FUNCTIONS):
        return None
    return _Candidate(code, frozenset(names), source)


def _json_candidate(text: str) -> _Candidate | None:
    """The {"generate_features": ..., "strategy_logic": ..., "learnings": ...} object, when text is one."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        payload = json.loads(text, strict=False)  # models often put raw newlines inside JSON strings
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder allows
        return None
    if not isinstance(payload, dict):
        return None
    parts = [payload[name] for name in FUNCTIONS if isinstance(payload.get(name), str) and payload[name].strip()]
    if not parts:
        return None
    found = _code_candidate("\n\n\n".join(parts), "json", require_parse=False)
    if found is None:
        return None
    learnings = payload.get("learnings")
    return _Candidate(found.code, found.names, "json", learnings if isinstance(learnings, str) else "")


def _between_delimiters(code: str) -> str:
    """The text between trade.py's delimiter lines when the model copied them; no delimiter line survives."""
    lines = code.split("\n")
    marks = [i for i, line in enumerate(lines) if line.strip() in (BLOCK_START, BLOCK_END)]
    starts = [i for i in marks if lines[i].strip() == BLOCK_START]
    ends = [i for i in marks if lines[i].strip() == BLOCK_END and starts and i > starts[0]]
    if starts and ends:
        return "\n".join(lines[starts[0] + 1 : ends[0]])
    return "\n".join(line for i, line in enumerate(lines) if i not in marks)


def _bound_names(code: str, allow_regex: bool = True) -> set[str] | None:
    """Top-level names the code binds (defs, classes, assignments); by regex when it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        if not allow_regex:
            return None
        return set(_DEF_LINE.findall(code)) | set(_ASSIGN_LINE.findall(code))
    names: set[str] = set()
    for node in tree.body:
        names |= _statement_names(node)
    return names


def _statement_names(node: ast.stmt) -> set[str]:
    """Names one top-level statement binds."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    else:
        return set()
    return {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}


def _merge(donor: str, new: str, new_names: set[str]) -> str:
    """The donor's top-level statements with `new` in place of those it redefines (PEP 8 spacing)."""
    try:
        tree = ast.parse(donor)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return new  # nothing safe to keep; vetting will name what is missing
    lines = donor.split("\n")
    pieces: list[str] = []
    placed = False
    previous_end = 0
    for node in tree.body:
        # A piece runs from the end of the previous statement, so leading comments travel with it.
        end = node.end_lineno or node.lineno
        piece = "\n".join(lines[previous_end:end]).strip("\n")
        previous_end = end
        bound = _statement_names(node)
        if bound and bound <= new_names:
            if not placed and bound & set(FUNCTIONS):
                pieces.append(new)
                placed = True
            continue
        pieces.append(piece)
    if not placed:
        pieces.append(new)
    tail = "\n".join(lines[previous_end:]).strip("\n")
    if tail.strip():
        pieces.append(tail)
    return "\n\n\n".join(pieces)


def _prose(lines: list[str], fences: list[_Fence]) -> str:
    """The reply's text outside every fenced block."""
    inside = {i for fence in fences for i in range(fence.start, fence.end)}
    return "\n".join(line for i, line in enumerate(lines) if i not in inside)


def _bounded(text: str) -> str:
    """Trimmed learnings: no runs of blank lines, at most LEARNINGS_MAX_CHARS characters."""
    text = re.sub(r"\n[ \t]*(\n[ \t]*)+\n", "\n\n", text.strip())
    if len(text) > LEARNINGS_MAX_CHARS:
        text = text[: LEARNINGS_MAX_CHARS - 1].rstrip() + "…"
    return text
