"""Parsing model replies: which block is taken, what is kept from the parent, and each failure status."""

from __future__ import annotations

import ast
import json
import time

import pytest

from autotrade.candidate import baseline_source, extract_block
from autotrade.contract import BLOCK_END, BLOCK_START
from autotrade.errors import ReplyError
from autotrade.propose.reply import (
    EARLY_STOP_TAIL_CHARS,
    FORMAT_HINT,
    LEARNINGS_MAX_CHARS,
    MAX_REPLY_CHARS,
    parse_reply,
    reply_complete,
    split_reasoning,
    strip_reasoning,
)

PARENT = extract_block(baseline_source())

FEATURES = 'def generate_features(df):\n    df["RSI"] = df["Close"].diff()\n    return df'
LOGIC = 'def strategy_logic(row):\n    return 1 if row["RSI"] > 0 else -1'
BOTH = f"{FEATURES}\n\n\n{LOGIC}"


def top_level_functions(block: str) -> list[str]:
    return [n.name for n in ast.parse(block).body if isinstance(n, ast.FunctionDef)]


# -- taking the block ------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["python", "py", "Python", "python3", ""])
def test_python_or_unlabelled_fence_is_taken(label: str) -> None:
    parsed = parse_reply(f"Here you go.\n\n```{label}\n{BOTH}\n```\n", PARENT)
    assert parsed.block == BOTH + "\n"
    assert parsed.source == "python-block"
    assert parsed.kept_from_parent == ()


def test_crlf_reply_is_read_like_lf() -> None:
    reply = f"Idea.\r\n\r\n```python\r\n{BOTH}\r\n```\r\n".replace("\n", "\r\n").replace("\r\r\n", "\r\n")
    assert parse_reply(reply, PARENT).block == BOTH + "\n"


def test_tilde_fence_is_taken() -> None:
    assert parse_reply(f"~~~python\n{BOTH}\n~~~", PARENT).block == BOTH + "\n"


def test_unclosed_last_fence_is_taken() -> None:
    assert parse_reply(f"Done:\n```python\n{BOTH}\n", PARENT).block == BOTH + "\n"


def test_last_block_defining_a_function_wins() -> None:
    old = BOTH.replace("RSI", "OLD")
    reply = f"First try:\n```python\n{old}\n```\nBetter:\n```python\n{BOTH}\n```\nUsage:\n```python\nprint(1)\n```"
    assert parse_reply(reply, PARENT).block == BOTH + "\n"


def test_blocks_in_other_languages_are_ignored() -> None:
    reply = f"```python\n{BOTH}\n```\n```bash\ndef generate_features(df): pass\n```"
    assert parse_reply(reply, PARENT).block == BOTH + "\n"


def test_block_with_syntax_error_is_still_taken_for_vetting_to_report() -> None:
    broken = "def generate_features(df)\n    return df\n\n\ndef strategy_logic(row):\n    return 0"
    parsed = parse_reply(f"```python\n{broken}\n```", PARENT)
    assert parsed.block == broken + "\n"
    with pytest.raises(SyntaxError):
        ast.parse(parsed.block)


def test_indented_block_is_dedented() -> None:
    indented = "\n".join("    " + line if line else "" for line in BOTH.split("\n"))
    assert parse_reply(f"1. The code:\n\n    ```python\n{indented}\n    ```", PARENT).block == BOTH + "\n"


def test_copied_delimiter_lines_are_cut_away() -> None:
    whole_file = baseline_source().replace(PARENT, BOTH + "\n")
    parsed = parse_reply(f"```python\n{whole_file}```", PARENT)
    assert parsed.block == BOTH + "\n"
    assert BLOCK_START not in parsed.block and BLOCK_END not in parsed.block


def test_reply_that_is_only_code_is_taken() -> None:
    parsed = parse_reply(BOTH, PARENT)
    assert (parsed.block, parsed.source) == (BOTH + "\n", "bare")


# -- JSON replies ----------------------------------------------------------------------------------------


def test_json_reply_is_used() -> None:
    reply = json.dumps({"generate_features": FEATURES, "strategy_logic": LOGIC, "learnings": "RSI sign."})
    parsed = parse_reply(reply, PARENT)
    assert parsed.block == BOTH + "\n"
    assert (parsed.source, parsed.learnings) == ("json", "RSI sign.")


def test_fenced_json_reply_with_raw_newlines_is_used() -> None:
    raw = '{"generate_features": "' + FEATURES.replace('"', '\\"') + '", "strategy_logic": "'
    raw += LOGIC.replace('"', '\\"') + '"}'
    parsed = parse_reply(f"```json\n{raw}\n```", PARENT)
    assert parsed.block == BOTH + "\n"
    assert parsed.source == "json"


def test_json_without_the_functions_is_not_code() -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply('{"answer": "def generate_features(df): return df"}', PARENT)
    assert caught.value.status == "parse_error"


@pytest.mark.parametrize("wrap", ["{}", "```json\n{}\n```"])
def test_deeply_nested_json_reply_is_a_parse_error_not_a_crash(wrap: str) -> None:
    # json.loads raises RecursionError (not ValueError) past ~1000 levels; a degenerate reply must not end the run.
    nested = "{" + '"a": {' * 5000 + "1" + "}" * 5001
    with pytest.raises(ReplyError) as caught:
        parse_reply(wrap.format(nested), PARENT)
    assert caught.value.status == "parse_error"


# -- one function only -----------------------------------------------------------------------------------


def test_one_function_keeps_the_parents_other_one() -> None:
    parsed = parse_reply(f"```python\n{LOGIC}\n```", PARENT)
    assert parsed.kept_from_parent == ("generate_features",)
    assert top_level_functions(parsed.block) == ["generate_features", "strategy_logic"]
    assert 'df["SMA_20"]' in parsed.block  # the parent's generate_features
    assert 'row["RSI"]' in parsed.block and 'row["SMA_20"]' not in parsed.block


def test_one_function_keeps_parent_helpers_and_constants_not_redefined() -> None:
    parent = (
        "FAST = 20\nSLOW = 50\n\n\ndef _mean(s, n):\n    return s.rolling(n).mean()\n\n\n"
        'def generate_features(df):\n    df["F"] = _mean(df["Close"], FAST)\n    return df\n\n\n'
        'def strategy_logic(row):\n    return 1 if row["F"] > 0 else 0\n'
    )
    new = 'SLOW = 100\n\n\ndef strategy_logic(row):\n    return 1 if row["F"] > SLOW else -1'
    parsed = parse_reply(f"```python\n{new}\n```", parent)
    tree = ast.parse(parsed.block)
    assigned = [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets]
    assert assigned == ["FAST", "SLOW"]  # the parent's SLOW is replaced by the reply's, not duplicated
    assert "SLOW = 100" in parsed.block and "SLOW = 50" not in parsed.block
    assert top_level_functions(parsed.block) == ["_mean", "generate_features", "strategy_logic"]
    assert parsed.kept_from_parent == ("generate_features",)


def test_functions_split_over_two_blocks_are_both_taken_from_the_reply() -> None:
    parsed = parse_reply(f"Features:\n```python\n{FEATURES}\n```\nLogic:\n```python\n{LOGIC}\n```", PARENT)
    assert parsed.block == BOTH + "\n"
    assert parsed.kept_from_parent == ()


# -- learnings -------------------------------------------------------------------------------------------


def test_learnings_come_from_the_markdown_block() -> None:
    reply = f"Some chatter.\n```python\n{BOTH}\n```\n```markdown\n## RSI sign\nMomentum persists.\n```"
    assert parse_reply(reply, PARENT).learnings == "## RSI sign\nMomentum persists."


def test_learnings_fall_back_to_the_prose_outside_code() -> None:
    reply = f"Hypothesis: momentum.\n\n\n\n```python\n{BOTH}\n```\n\nExpect fewer trades.  \n"
    assert parse_reply(reply, PARENT).learnings == "Hypothesis: momentum.\n\nExpect fewer trades."


def test_learnings_are_bounded() -> None:
    learnings = parse_reply(f"```md\n{'word ' * 2000}\n```\n```python\n{BOTH}\n```", PARENT).learnings
    assert len(learnings) == LEARNINGS_MAX_CHARS
    assert learnings.endswith("…")


# -- failures --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n", None, "<think>all thought, no answer</think>", "<think>cut off here"])
def test_empty_reply_is_status_empty(text: str | None) -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply(text, PARENT)
    assert caught.value.status == "empty"
    assert FORMAT_HINT in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "I think an RSI strategy would work well.",
        "```python\nimport numpy as np\nx = 1\n```",
        "```markdown\ndef generate_features(df): pass\n```",
    ],
)
def test_reply_without_a_defining_code_block_is_a_parse_error(text: str) -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply(text, PARENT)
    assert caught.value.status == "parse_error"
    assert str(caught.value).endswith(FORMAT_HINT)
    assert "\n" not in str(caught.value)


def test_code_inside_think_tags_is_never_taken() -> None:
    with pytest.raises(ReplyError) as caught:
        parse_reply(f"<think>Maybe:\n```python\n{BOTH}\n```\n</think>\nI could not decide.", PARENT)
    assert caught.value.status == "parse_error"


def test_code_before_a_lone_closing_think_tag_is_never_taken() -> None:
    reply = f"Draft:\n```python\n{BOTH.replace('RSI', 'DRAFT')}\n```\n</think>\n```python\n{BOTH}\n```"
    assert parse_reply(reply, PARENT).block == BOTH + "\n"


# -- replies cut at the token limit (finish_reason "length") --------------------------------------------

TRUNCATED_MESSAGE = "the reply was cut off at the token limit (finish_reason=length): think more briefly and "


def assert_truncated(reply: str) -> None:
    """A cut reply that yields no code fails as `truncated`, with the message that tells the model why."""
    with pytest.raises(ReplyError) as caught:
        parse_reply(reply, PARENT, finish_reason="length")
    assert caught.value.status == "truncated"
    assert str(caught.value) == TRUNCATED_MESSAGE + FORMAT_HINT


def test_cut_reply_with_a_closed_python_block_is_salvaged_without_its_cut_markdown() -> None:
    parsed = parse_reply(f"RSI sign.\n```python\n{BOTH}\n```\n```markdown\nThe idea is", PARENT, finish_reason="length")
    assert (parsed.block, parsed.source, parsed.kept_from_parent) == (BOTH + "\n", "python-block", ())
    # The cut markdown block is not a hypothesis; the prose outside fences is, as for a reply with none.
    assert parsed.learnings == "RSI sign."


def test_cut_reply_keeps_a_closed_markdown_block_before_its_ramble() -> None:
    reply = f"```python\n{BOTH}\n```\n```markdown\nRSI sign\n```\nOn second thought, " + "maybe " * 500
    parsed = parse_reply(reply, PARENT, finish_reason="length")
    assert (parsed.block, parsed.learnings) == (BOTH + "\n", "RSI sign")


@pytest.mark.parametrize(
    "reply",
    [
        f"Here:\n```python\n{BOTH}\n",  # the fence never closed: the code may stop mid-function
        f"```python\n{FEATURES}\n\n\ndef strategy_logic(row):\n    return 1 if row[",
        f"```markdown\nRSI sign\n```\n```python\n{BOTH}",  # a closed block, but not a code block
        BOTH,  # bare code: nothing marks where it ends
        "<think>The RSI could",  # cut while thinking
        "",
    ],
)
def test_cut_reply_without_a_closed_code_block_is_truncated(reply: str) -> None:
    assert_truncated(reply)


def test_the_same_unclosed_and_bare_replies_are_taken_when_not_cut() -> None:
    # The contrast that makes "length" matter: only a reply known to be cut has an untrustworthy end.
    assert parse_reply(f"Here:\n```python\n{BOTH}\n", PARENT, finish_reason="stop").block == BOTH + "\n"
    assert parse_reply(BOTH, PARENT, finish_reason="stop").source == "bare"


def test_cut_reply_takes_the_last_closed_block_and_never_the_cut_one() -> None:
    # Complete replies: the last block defining a function wins. A cut reply's unclosed block is incomplete code,
    # so it is no candidate at all, and the same rule picks the last closed one.
    reply = f"```python\n{BOTH}\n```\nBetter:\n```python\n{BOTH.replace('RSI', 'NEW')}\n    return"
    assert parse_reply(reply, PARENT, finish_reason="length").block == BOTH + "\n"


def test_cut_block_is_no_donor_of_a_missing_function() -> None:
    # strategy_logic comes from the parent, not from the cut block that started to redefine it.
    reply = f"```python\n{FEATURES}\n```\n```python\n{LOGIC.replace('RSI', 'CUT')}"
    parsed = parse_reply(reply, PARENT, finish_reason="length")
    assert parsed.kept_from_parent == ("strategy_logic",)
    assert "CUT" not in parsed.block and top_level_functions(parsed.block)[-2:] == [
        "generate_features",
        "strategy_logic",
    ]


def test_cut_reply_in_json_is_taken_only_when_the_object_closed() -> None:
    payload = json.dumps({"generate_features": FEATURES, "strategy_logic": LOGIC, "learnings": "RSI sign."})
    whole = parse_reply(payload, PARENT, finish_reason="length")
    assert (whole.source, whole.learnings) == ("json", "RSI sign.")
    assert parse_reply(f"```json\n{payload}\n```\nAlso", PARENT, finish_reason="length").source == "json"
    assert_truncated(payload[:-10])
    assert_truncated(f"```json\n{payload}\n")  # the object closed, the fence did not: nothing says it ends there


def test_cut_reply_longer_than_any_reply_keeps_the_closed_block_before_the_limit() -> None:
    ramble = "I keep thinking about it.\n" * (MAX_REPLY_CHARS // 20)
    reply = f"```python\n{BOTH}\n```\n{ramble}"
    assert parse_reply(reply, PARENT, finish_reason="length").block == BOTH + "\n"
    with pytest.raises(ReplyError) as caught:  # a reply that ended on its own is refused for its size, as before
        parse_reply(reply, PARENT, finish_reason="stop")
    assert caught.value.status == "parse_error"
    assert_truncated(f"{ramble}```python\n{BOTH}\n```\n")  # closed only past the limit: never parsed


# -- reasoning -------------------------------------------------------------------------------------------


def test_split_reasoning_separates_paired_lone_and_unclosed_tags() -> None:
    assert split_reasoning("<think>a</think>\nB") == ("B", "a")
    assert split_reasoning("a\n</think>\n\nB") == ("B", "a")
    assert split_reasoning("B <THINKING>x</THINKING> C") == ("B  C", "x")
    assert split_reasoning("B\n<think>never closed") == ("B", "never closed")
    assert strip_reasoning("plain") == "plain"


def test_a_reply_far_larger_than_any_block_is_refused_fast_without_parsing() -> None:
    code = "def strategy_logic(row):\n" + "    x = 1\n" * 1_200_000  # 12 MB of code
    started = time.monotonic()
    with pytest.raises(
        ReplyError, match=r"was 12,000,038 characters outside its reasoning; a reply may hold at most 200,000"
    ) as caught:
        parse_reply(f"```python\n{code}```\n", "")
    assert caught.value.status == "parse_error" and time.monotonic() - started < 1.0


def test_long_reasoning_does_not_count_against_the_reply_size() -> None:
    reply = "<think>" + "let me think. " * 100_000 + "</think>\n```python\ndef strategy_logic(row):\n    return 1\n```"
    assert "return 1" in parse_reply(reply, "").block


# -- a reply complete before its end (early stop while streaming) ----------------------------------------

RAMBLE = "\n\nNext I could also try a moving average crossover, or perhaps volatility bands, and then " * 40
HYPOTHESIS = "```markdown\nRising RSI means momentum.\n```"


def first_complete_prefix(reply: str, step: int = 7) -> tuple[str, str] | None:
    """The reply as a stream of `step`-character deltas: the first prefix `reply_complete` accepts, and why."""
    for end in range(step, len(reply) + step, step):
        why = reply_complete(reply[:end])
        if why is not None:
            return reply[:end], why
    return None


@pytest.mark.parametrize(
    "reply",
    [
        f"Here:\n```python\n{BOTH}\n```\n{HYPOTHESIS}\n{RAMBLE}",
        f"{HYPOTHESIS}\nThe code:\n```python\n{BOTH}\n```\n{RAMBLE}",  # the hypothesis first
        f"```py\n{FEATURES}\n```\n~~~python\n{LOGIC}\n~~~\n{HYPOTHESIS}\n{RAMBLE}",  # one function per block
        f"<think>\n```python\ndef x():\n    pass\n```\n</think>\n```python\n{BOTH}\n```\n{HYPOTHESIS}{RAMBLE}",
    ],
)
def test_a_reply_complete_with_its_hypothesis_parses_as_the_whole_reply(reply: str) -> None:
    found = first_complete_prefix(reply)
    assert found is not None
    prefix, why = found
    assert why == "python and markdown blocks closed"
    assert len(prefix) < len(reply) - len(RAMBLE) + 10  # at the markdown block's end, before the ramble
    assert parse_reply(prefix, PARENT, "early_stop") == parse_reply(reply, PARENT, "stop")


def test_a_closed_python_block_then_prose_is_complete_with_the_same_block() -> None:
    reply = f"```python\n{BOTH}\n```\n{RAMBLE}"
    found = first_complete_prefix(reply)
    assert found is not None
    prefix, why = found
    assert why == f"{EARLY_STOP_TAIL_CHARS} characters of prose after a closed python block"
    assert len(prefix) < len(reply) // 2
    assert parse_reply(prefix, PARENT, "early_stop").block == parse_reply(reply, PARENT, "stop").block


@pytest.mark.parametrize(
    "reply",
    [
        f"```python\n{BOTH}\n{RAMBLE}",  # the code block never closes
        f"```python\n{BOTH}\n```\n```markdown\n{RAMBLE}",  # the hypothesis block never closes
        f"```python\n{BOTH}\n```\nAnd a test:\n```text\nsample\n```\n{RAMBLE}",  # the last block is not code
        f"```python\n{LOGIC}\n```\n{HYPOTHESIS}\n{RAMBLE}",  # one function: another block may follow
        f"<think>\n```python\n{BOTH}\n```\n{HYPOTHESIS}\n{RAMBLE}",  # all of it reasoning so far
        f"```python\n{BOTH}\n```\n{HYPOTHESIS}",  # the closing fence's line has not ended yet
    ],
)
def test_a_reply_that_may_go_on_is_not_complete(reply: str) -> None:
    assert first_complete_prefix(reply) is None


def test_early_stop_is_parsed_like_a_reply_that_ended_on_its_own() -> None:
    # "length" salvages closed blocks only; a stopped reply was complete, so every rule applies as for "stop".
    for reply in (f"Here:\n```python\n{BOTH}\n", BOTH, f"```python\n{BOTH}\n```\n{HYPOTHESIS}"):
        assert parse_reply(reply, PARENT, finish_reason="early_stop") == parse_reply(
            reply, PARENT, finish_reason="stop"
        )
