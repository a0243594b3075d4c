"""learnings.md rendered from records, and the prompt's bounded, deterministic learnings."""

from __future__ import annotations

from autotrade.research.learnings import Lesson, compact, entry, for_prompt, render_file


def lesson(i: int, status: str = "ok", hypothesis: str = "", val: float | None = 0.05) -> Lesson:
    return Lesson(
        iteration=i,
        parent=None if i == 0 else i - 1,
        status=status,
        hypothesis=hypothesis or f"# Idea {i}\n\nUse a {i}-day window because it should help." + " More detail." * 20,
        train_return=None if val is None else 0.10,
        val_return=val,
        entered=status == "ok",
        message="" if status == "ok" else "KeyError: 'RSI'",
    )


def test_an_entry_holds_the_hypothesis_and_a_system_line_with_actual_results() -> None:
    text = entry(lesson(3))
    assert text.startswith("## Iteration 3 (parent 2) — ok")
    assert "Use a 3-day window" in text
    assert "SYSTEM: status ok; train_return +10.00%, val_return +5.00%; entered the population" in text


def test_a_failed_entry_says_why() -> None:
    text = entry(lesson(4, status="runtime_error", val=None))
    assert "SYSTEM: status runtime_error; KeyError: 'RSI'; did not enter the population" in text


def test_the_file_is_rendered_in_iteration_order_once_each() -> None:
    text = render_file([lesson(2), lesson(0), lesson(1)])
    positions = [text.index(f"## Iteration {i} ") for i in range(3)]
    assert positions == sorted(positions)
    assert text.count("## Iteration 1 ") == 1


def test_compact_line_has_iteration_status_val_and_title() -> None:
    assert compact(lesson(7)) == "- iter 7 · ok · val +5.00% · Idea 7"


def test_prompt_learnings_stay_within_budget_however_long_the_run() -> None:
    lessons = [lesson(i) for i in range(300)]
    for budget in (0, 50, 400, 2000, 6000):
        assert len(for_prompt(lessons, budget)) <= budget


def test_newest_entries_are_full_and_older_ones_compacted() -> None:
    lessons = [lesson(i) for i in range(20)]
    text = for_prompt(lessons, 2500)
    assert entry(lessons[19]).strip() in text
    assert "- iter 5 · ok" in text or "older iterations omitted" in text
    assert "Use a 5-day window" not in text
    first_full = text.index("## Iteration")
    assert "- iter" not in text[first_full:]  # compact lines come before the full entries


def test_prompt_learnings_are_deterministic() -> None:
    lessons = [lesson(i) for i in range(50)]
    assert for_prompt(lessons, 3000) == for_prompt(list(reversed(lessons)), 3000)


def test_everything_fits_in_full_when_the_budget_allows() -> None:
    lessons = [lesson(i) for i in range(3)]
    text = for_prompt(lessons, 100_000)
    assert all(entry(x).strip() in text for x in lessons)
    assert "- iter" not in text
