"""The population: the top-K ok iterations by the objective, and how the next parent is chosen.

An iteration that does not enter the population is a failure (errors included); entering resets
the failure streak. After a failure the next proposal branches from a uniformly random member
(random reversion), drawn from a seeded generator whose state is saved with the run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Member:
    """One population member: an iteration and its objective value (higher is better)."""

    iteration: int
    score: float


@dataclass(frozen=True)
class Population:
    """Up to `size` members, best first; ties keep the earlier iteration ahead."""

    size: int
    members: tuple[Member, ...] = ()

    def admit(self, iteration: int, score: float | None) -> tuple[Population, bool]:
        """The population after offering one iteration, and whether it entered."""
        if score is None or not math.isfinite(score):
            return self, False
        ranked = sorted((*self.members, Member(iteration, float(score))), key=lambda m: (-m.score, m.iteration))
        kept = tuple(ranked[: self.size])
        entered = any(m.iteration == iteration for m in kept)
        return Population(self.size, kept), entered

    @property
    def best(self) -> Member | None:
        """The best member, or None while empty."""
        return self.members[0] if self.members else None

    @property
    def iterations(self) -> list[int]:
        """Member iterations, best first."""
        return [m.iteration for m in self.members]

    def to_list(self) -> list[dict[str, Any]]:
        """JSON form for state.json."""
        return [{"iteration": m.iteration, "score": m.score} for m in self.members]

    @classmethod
    def from_list(cls, size: int, raw: list[dict[str, Any]]) -> Population:
        """Rebuild from state.json."""
        return cls(size, tuple(Member(int(m["iteration"]), float(m["score"])) for m in raw))


@dataclass(frozen=True)
class Step:
    """The bookkeeping outcome of one evaluated iteration."""

    population: Population
    entered: bool
    fail_streak: int  # consecutive iterations that did not enter, after this one


def record_outcome(population: Population, fail_streak: int, iteration: int, score: float | None) -> Step:
    """Offer an iteration to the population and update the failure streak."""
    after, entered = population.admit(iteration, score)
    return Step(after, entered, 0 if entered else fail_streak + 1)


def choose_parent(population: Population, latest: int, entered: bool, rng: random.Random, fallback: int = 0) -> int:
    """The next proposal's parent: the latest if it entered, else a uniformly random member.

    With an empty population (every attempt so far failed) the fallback, the starting
    trade.py, is the only code there is.
    """
    if entered:
        return latest
    if not population.members:
        return fallback
    return population.members[rng.randrange(len(population.members))].iteration


def rng_state(rng: random.Random) -> list[Any]:
    """The generator's state as JSON (version, 625 words, gauss_next)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_state(state: list[Any]) -> random.Random:
    """A generator restored from rng_state's JSON."""
    rng = random.Random()
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))
    return rng
