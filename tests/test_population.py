"""Top-K selection, the failure streak, random reversion and the saved generator state."""

from __future__ import annotations

import json
import random

from autotrade.research.population import Population, choose_parent, record_outcome, rng_from_state, rng_state


def test_population_keeps_the_top_k_best_first() -> None:
    population = Population(3)
    for iteration, score in enumerate([0.1, 0.5, 0.3, 0.2, 0.4]):
        population, _ = population.admit(iteration, score)
    assert population.iterations == [1, 4, 2]


def test_an_iteration_below_a_full_population_does_not_enter() -> None:
    population = Population(2)
    population, _ = population.admit(0, 0.3)
    population, _ = population.admit(1, 0.2)
    after, entered = population.admit(2, 0.1)
    assert not entered and after == population


def test_a_tie_keeps_the_earlier_iteration_ahead() -> None:
    population, _ = Population(1).admit(0, 0.2)
    after, entered = population.admit(1, 0.2)
    assert not entered and after.iterations == [0]


def test_failures_and_non_finite_scores_never_enter() -> None:
    population = Population(3)
    for score in (None, float("nan"), float("-inf")):
        population, entered = population.admit(0, score)
        assert not entered
    assert population.members == ()


def test_streak_counts_misses_and_resets_on_entering() -> None:
    population, streak = Population(1), 0
    outcomes = []
    for iteration, score in enumerate([0.1, None, 0.05, 0.2, None]):
        step = record_outcome(population, streak, iteration, score)
        population, streak = step.population, step.fail_streak
        outcomes.append((step.entered, streak))
    assert outcomes == [(True, 0), (False, 1), (False, 2), (True, 0), (False, 1)]


def test_parent_is_the_latest_when_it_entered_without_using_the_generator() -> None:
    population, _ = Population(3).admit(4, 1.0)
    rng = random.Random(1)
    before = rng.getstate()
    assert choose_parent(population, 4, True, rng) == 4
    assert rng.getstate() == before


def test_after_a_failure_the_parent_is_a_uniformly_random_member() -> None:
    population = Population(3)
    for iteration, score in [(1, 0.3), (2, 0.2), (3, 0.1)]:
        population, _ = population.admit(iteration, score)
    rng = random.Random(7)
    draws = [choose_parent(population, 9, False, rng) for _ in range(3000)]
    counts = {i: draws.count(i) for i in (1, 2, 3)}
    assert set(draws) == {1, 2, 3}
    assert all(900 < c < 1100 for c in counts.values())


def test_empty_population_falls_back_to_the_start() -> None:
    assert choose_parent(Population(3), 5, False, random.Random(0), fallback=0) == 0


def test_generator_state_survives_json_and_continues_the_same_sequence() -> None:
    rng = random.Random(123)
    rng.random()
    restored = rng_from_state(json.loads(json.dumps(rng_state(rng))))
    assert [restored.randrange(3) for _ in range(20)] == [rng.randrange(3) for _ in range(20)]
