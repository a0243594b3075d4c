"""Text that came from the model or from a candidate, made safe to show, store and put in a prompt.

A reply, a candidate's printed output, its exception messages and its column names reach the
terminal (the live display, `backtest`, `report`), `learnings.md` and the next prompt. Control
characters in them can drive a terminal (ESC sequences: OSC 52 clipboard writes, cursor moves,
hidden text; Rich strips only BEL, BS, VT, FF and CR) or hide what code really says (bidi
overrides). Every such character is replaced by a visible escape, so nothing is lost and
nothing acts.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls, the bidi marks, embeddings, overrides and isolates, and
# the invisible ones (zero-width characters, line and paragraph separators, the BOM, tag characters) that can
# hide text from a reader while a model reads it in the next prompt.
UNSAFE_CHARACTERS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\U000e0000-\U000e007f]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def clean_text(text: str) -> str:
    """`text` with every terminal-driving or text-reordering character shown as an escape (CRLF becomes LF)."""
    return UNSAFE_CHARACTERS.sub(_escape, text.replace("\r\n", "\n"))


def first_unsafe(text: str) -> str | None:
    """The first unsafe character of `text` as U+XXXX, or None when it has none."""
    match = UNSAFE_CHARACTERS.search(text)
    return None if match is None else f"U+{ord(match.group()):04X}"
