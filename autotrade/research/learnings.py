"""learnings.md: each iteration's hypothesis plus a system line with what actually happened.

The file is rendered from the committed iteration records, never appended blindly, so an
iteration that is interrupted and redone can never leave a duplicate entry. The prompt gets
the learnings within a character budget: the newest entries in full, older ones compacted
deterministically to one line each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from autotrade.fmt import first_line
from autotrade.propose.prompts import percent
from autotrade.research.attempt import Attempt

HEADER = "# Learnings\n\nOne entry per iteration: the model's hypothesis, then the harness's actual results.\n"
TITLE_CHARS = 100  # a compacted line keeps this much of the hypothesis title


@dataclass(frozen=True)
class Lesson:
    """What one iteration taught: the hypothesis and its measured outcome."""

    iteration: int
    parent: int | None
    status: str
    hypothesis: str
    train_return: float | None
    val_return: float | None
    entered: bool
    message: str = ""
    repairs: int = 0  # repair turns its reply took (--repair)

    @classmethod
    def from_attempt(cls, attempt: Attempt) -> Lesson:
        """What a committed attempt taught."""
        return cls(
            iteration=attempt.iteration,
            parent=attempt.parent,
            status=attempt.status,
            hypothesis=attempt.hypothesis.strip(),
            train_return=attempt.train_return,
            val_return=attempt.val_return,
            entered=attempt.entered_population,
            message=attempt.message,
            repairs=len(attempt.repair_turns),
        )

    @property
    def title(self) -> str:
        """The hypothesis's first non-empty line without markdown markup, trimmed."""
        for line in self.hypothesis.splitlines():
            text = line.strip().lstrip("#>*-• ").strip().strip("*_").strip()
            if text:
                return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"
        return "(no hypothesis)" if self.iteration else "baseline"


def system_line(lesson: Lesson) -> str:
    """The harness's line of actual results for one iteration."""
    parts = [f"status {lesson.status}"]
    if lesson.repairs:
        turns = f"{lesson.repairs} turn{'s' if lesson.repairs > 1 else ''}"
        parts[0] += (
            f" (repaired after {turns})" if lesson.status == "ok" else f" (still failing after {turns} of repair)"
        )
    if lesson.train_return is not None or lesson.val_return is not None:
        parts.append(f"train_return {percent(lesson.train_return)}, val_return {percent(lesson.val_return)}")
    if lesson.status != "ok" and lesson.message:
        parts.append(first_line(lesson.message, 200))
    parts.append("entered the population" if lesson.entered else "did not enter the population")
    return "SYSTEM: " + "; ".join(parts)


def entry(lesson: Lesson) -> str:
    """One full learnings entry (markdown)."""
    parent = "baseline" if lesson.parent is None else f"parent {lesson.parent}"
    body = lesson.hypothesis or ("The starting trade.py, evaluated as is." if lesson.iteration == 0 else "(none given)")
    return f"## Iteration {lesson.iteration} ({parent}) — {lesson.status}\n\n{body}\n\n{system_line(lesson)}\n"


def compact(lesson: Lesson) -> str:
    """One line: iteration, status, validation return, hypothesis title."""
    return f"- iter {lesson.iteration} · {lesson.status} · val {percent(lesson.val_return)} · {lesson.title}"


def render_file(lessons: Iterable[Lesson]) -> str:
    """The whole learnings.md, oldest entry first."""
    return HEADER + "".join("\n" + entry(lesson) for lesson in sorted(lessons, key=lambda x: x.iteration))


def _assemble(full: list[str], lines: list[str], omitted: int) -> str:
    """Join the prompt's learnings: omission note, compacted lines (oldest first), full entries."""
    parts: list[str] = []
    if omitted:
        parts.append(f"({omitted} older iterations omitted)")
    if lines:
        parts.append("Older iterations, one line each (oldest first):\n" + "\n".join(reversed(lines)))
    parts.extend(reversed(full))
    return "\n".join(parts)


def for_prompt(lessons: Iterable[Lesson], budget: int) -> str:
    """Learnings within `budget` characters: newest entries in full, older ones one line each.

    Walks from the newest entry back: full entries while they fit, then compacted lines while
    those fit; the rest is counted, not shown. Deterministic, and never longer than budget.
    """
    ordered = sorted(lessons, key=lambda x: x.iteration, reverse=True)
    full: list[str] = []
    lines: list[str] = []
    for position, lesson in enumerate(ordered):
        left = len(ordered) - position - 1
        if not lines and len(_assemble([*full, entry(lesson)], [], left)) <= budget:
            full.append(entry(lesson))
        elif len(_assemble(full, [*lines, compact(lesson)], left)) <= budget:
            lines.append(compact(lesson))
        else:
            break
    text = _assemble(full, lines, len(ordered) - len(full) - len(lines))
    return text if len(text) <= budget else ""
