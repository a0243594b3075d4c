"""What the research and report commands share: where runs live, and how a note reaches the user."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.text import Text

RUNS_ROOT = Path("train")


def note_on_stderr(line: str) -> None:
    """An informational line on stderr, never parsed as markup (it may quote a file)."""
    Console(stderr=True).print(Text(line, style="yellow"), soft_wrap=True)
