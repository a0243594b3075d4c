"""The collapse rule: the last M ok attempts in one structure family make the next prompt ask for another."""

from __future__ import annotations

import pytest

from autotrade.evaluation.families import FAMILIES
from autotrade.propose.prompts import collapse_section
from autotrade.research.attempt import Attempt
from autotrade.research.collapse import Collapse, collapse_of
from autotrade.status import Status

CROSSOVER = ("moving average", "crossover")
RSI = ("RSI-like",)
FAILED = "failed"


def attempts(*families: tuple[str, ...] | str | None) -> list[Attempt]:
    """One attempt per argument, by iteration: ok with those families, or a runtime error (FAILED)."""
    return [
        Attempt(iteration=i, status=Status.RUNTIME_ERROR, families=RSI)
        if f == FAILED
        else Attempt(iteration=i, status=Status.OK, families=f)
        for i, f in enumerate(families)
    ]


def test_the_last_m_ok_attempts_in_one_family_are_a_collapse_naming_the_families_not_tried() -> None:
    collapse = collapse_of(attempts(RSI, CROSSOVER, CROSSOVER, CROSSOVER), 3)
    untried = tuple(f for f in FAMILIES if f not in {*CROSSOVER, *RSI})
    assert collapse == Collapse(CROSSOVER, 3, untried)


def test_one_ok_attempt_in_another_family_among_the_last_m_is_no_collapse() -> None:
    assert collapse_of(attempts(CROSSOVER, CROSSOVER, RSI, CROSSOVER, CROSSOVER), 3) is None


def test_fewer_ok_attempts_than_the_window_are_no_collapse() -> None:
    assert collapse_of(attempts(CROSSOVER, CROSSOVER), 3) is None


def test_a_window_of_zero_never_collapses() -> None:
    assert collapse_of(attempts(*[CROSSOVER] * 10), 0) is None


def test_failures_in_between_are_ignored_but_count_as_tried() -> None:
    collapse = collapse_of(attempts(CROSSOVER, FAILED, CROSSOVER, FAILED, CROSSOVER, FAILED), 3)
    assert collapse is not None and collapse.families == CROSSOVER and "RSI-like" not in collapse.others


@pytest.mark.parametrize("odd", [None, ()], ids=["unknown family", "no recognised indicator"])
def test_an_attempt_without_a_known_family_breaks_the_streak(odd: tuple[str, ...] | None) -> None:
    assert collapse_of(attempts(CROSSOVER, odd, CROSSOVER), 3) is None
    assert collapse_of(attempts(odd, odd, odd), 3) is None


def test_when_every_family_was_tried_the_suggestions_are_those_outside_the_collapse() -> None:
    collapse = collapse_of(attempts(FAMILIES, CROSSOVER, CROSSOVER), 2)
    assert collapse is not None and collapse.others == tuple(f for f in FAMILIES if f not in CROSSOVER)


def test_the_prompt_section_names_the_family_the_window_and_the_examples() -> None:
    assert collapse_section("moving average + crossover", 5, ("RSI-like", "breakout", "calendar")) == (
        "## The search has collapsed\n"
        "Your last 5 working strategies were all built on the same indicators: moving average + crossover. "
        "Propose a strategy from a different family this time, for example RSI-like, breakout or calendar, "
        "even if it departs from your starting point's approach.\n"
    )
    assert "for example RSI-like, even" in collapse_section("volume", 2, ("RSI-like",))
    assert "for example" not in collapse_section("volume", 2, ())
