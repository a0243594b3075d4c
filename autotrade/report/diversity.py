"""How varied a run's strategies were: indicator families from the AST, distinct strategies, correlated positions.

The original experiment found its model copied the prompt's example 96% of the time; these figures make that
kind of collapse visible. Families come from the agent block's syntax tree (`evaluation.families`, a heuristic:
nothing is run).
"""

from __future__ import annotations

import ast
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from autotrade.evaluation.families import FAMILIES, block_families, operations_and_columns, tag_families
from autotrade.evaluation.novelty import structure_hash
from autotrade.research.attempt import Attempt
from autotrade.research.collapse import Collapse, collapse_of


@dataclass(frozen=True)
class BlockProfile:
    """What one agent block uses: indicator families, operation counts, OHLCV columns, and its structure hash."""

    families: frozenset[str]
    operations: Mapping[str, int]
    columns: frozenset[str]
    structure: str | None  # normalised-AST hash (12 hex digits); None when the block does not parse


def profile_block(block: str) -> BlockProfile:
    """Families, operations, columns and structure hash of one agent block (empty profile when it does not parse)."""
    try:
        tree = ast.parse(block)
    except (SyntaxError, ValueError):
        return BlockProfile(frozenset(), {}, frozenset(), None)
    operations, columns = operations_and_columns(tree)
    return BlockProfile(
        families=tag_families(tree, operations, columns),
        operations=dict(operations),
        columns=columns,
        structure=structure_hash(tree),
    )


def position_correlation(positions: Sequence[np.ndarray]) -> np.ndarray:
    """Pairwise Pearson correlation (k × k) of 0/1 position series; identical series 1, a constant one vs another NaN.

    A constant series has no variance, so its correlation with anything different is undefined (NaN);
    with an identical series it is 1, which is what a population of copies must show.
    """
    k = len(positions)
    matrix = np.eye(k)
    for a in range(k):
        for b in range(a + 1, k):
            x, y = np.asarray(positions[a], dtype=float), np.asarray(positions[b], dtype=float)
            if x.shape == y.shape and np.array_equal(x, y):
                value = 1.0
            elif x.shape != y.shape or x.std() == 0.0 or y.std() == 0.0:
                value = math.nan
            else:
                value = float(np.corrcoef(x, y)[0, 1])
            matrix[a, b] = matrix[b, a] = value
    return matrix


def mean_off_diagonal(matrix: np.ndarray) -> float | None:
    """Mean of the finite off-diagonal entries; None with fewer than two series or none finite."""
    k = matrix.shape[0]
    if k < 2:
        return None
    values = matrix[~np.eye(k, dtype=bool)]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


@dataclass(frozen=True)
class Diversity:
    """Diversity of one run's strategies.

    candidates: iterations whose block parsed; proposals: those after iteration 0 (the model's own);
    distinct: distinct structure hashes among candidates (and among ok ones);
    repeats: proposals whose structure equals an earlier iteration's; copies_of_start: equal to iteration 0's.
    family_counts / operation_counts: how many candidates use each family / call each operation at least once.
    correlation: the population's pairwise position correlation (population order), with its mean off the diagonal.
    """

    candidates: int
    ok_candidates: int
    proposals: int
    distinct: int
    distinct_ok: int
    repeats: int
    copies_of_start: int
    family_counts: dict[str, int]
    operation_counts: dict[str, int]
    structures: dict[int, str | None]  # iteration → structure hash
    population: tuple[int, ...]
    correlation: np.ndarray = field(repr=False, compare=False)
    mean_correlation: float | None = None

    @property
    def repeat_share(self) -> float | None:
        """Share of the proposals that repeat an earlier strategy's structure."""
        return self.repeats / self.proposals if self.proposals else None

    @property
    def collapsed(self) -> bool:
        """True when the search has collapsed onto one strategy (see `verdict`)."""
        few = self.ok_candidates >= 2 and self.distinct_ok <= 1
        copies = self.proposals >= 3 and (self.repeat_share or 0.0) >= 0.8
        same_positions = len(self.population) >= 2 and (self.mean_correlation or 0.0) >= 0.95
        return few or copies or same_positions

    def verdict(self) -> str:
        """One plain sentence on the diversity of the run."""
        if not self.candidates:
            return "no candidate code was evaluated, so there is nothing to compare."
        parts = (
            f"{self.distinct} distinct strategies among {self.candidates} candidates "
            f"({self.distinct_ok} among {self.ok_candidates} ok)"
        )
        if self.collapsed:
            return f"collapsed: {parts}; the model keeps proposing the same strategy with cosmetic changes."
        return f"varied: {parts}."


def measure_diversity(
    blocks: Mapping[int, str | None],
    ok: Iterable[int],
    population: Sequence[int],
    positions: Mapping[int, np.ndarray],
) -> Diversity:
    """Diversity of a run from each iteration's block (None when none), the ok iterations, the population and positions.

    positions: iteration → its position series (0/1 per bar, aligned across iterations); members without one are left
    out of the correlation.
    """
    ok_set = set(ok)
    profiles = {i: profile_block(b) for i, b in sorted(blocks.items()) if b is not None}
    parsed = {i: p for i, p in profiles.items() if p.structure is not None}
    start = parsed.get(0).structure if 0 in parsed else None
    seen: set[str] = set()
    repeats = copies = proposals = 0
    for i, profile in parsed.items():
        if i > 0:
            proposals += 1
            repeats += profile.structure in seen
            copies += start is not None and profile.structure == start
        seen.add(str(profile.structure))
    family_counts = Counter(f for p in parsed.values() for f in p.families)
    operation_counts = Counter(op for p in parsed.values() for op in p.operations)
    members = tuple(i for i in population if i in positions)
    matrix = position_correlation([positions[i] for i in members])
    return Diversity(
        candidates=len(parsed),
        ok_candidates=sum(i in ok_set for i in parsed),
        proposals=proposals,
        distinct=len({p.structure for p in parsed.values()}),
        distinct_ok=len({p.structure for i, p in parsed.items() if i in ok_set}),
        repeats=repeats,
        copies_of_start=copies,
        family_counts={f: family_counts[f] for f in FAMILIES if family_counts[f]},
        operation_counts=dict(operation_counts.most_common()),
        structures={i: p.structure for i, p in profiles.items()},
        population=members,
        correlation=matrix,
        mean_correlation=mean_off_diagonal(matrix),
    )


@dataclass(frozen=True)
class CollapseEpisode:
    """One collapse of the search (research.collapse) and what followed it.

    at: the ok iteration that made `window` in a row in `family`; first_nudge: the first later iteration whose prompt
    said so (None: none did, before the run ended or collapsed anew). after: the ok attempts from first_nudge on (at
    most `window`, before the next collapse), escaped: those in another family. best_before: the best objective
    before first_nudge (through `at` when none); best_after: the best from first_nudge to the next collapse or the end.
    """

    family: tuple[str, ...]
    at: int
    window: int
    first_nudge: int | None
    after: int
    escaped: int
    best_before: float | None
    best_after: float | None


def _best(attempts: Iterable[Attempt]) -> float | None:
    """The highest objective among ok attempts; None when none has one."""
    return max((a.objective for a in attempts if a.ok and a.objective is not None), default=None)


def collapse_episodes(
    attempts: Sequence[Attempt], blocks: Mapping[int, str | None], window: int
) -> tuple[CollapseEpisode, ...]:
    """Each time the search collapsed into one structure family, by the loop's own rule, and what its nudge did.

    A record written before families were recorded takes them from its block (`blocks`: iteration → block).
    """
    known = [
        a
        if a.families is not None or not blocks.get(a.iteration)
        else replace(a, families=block_families(str(blocks[a.iteration])))
        for a in attempts
    ]
    starts: list[tuple[int, Collapse]] = []  # index in `known`, collapse
    current: Collapse | None = None
    for k, attempt in enumerate(known):
        if not attempt.ok:
            continue
        found = collapse_of(known[: k + 1], window)
        if found is not None and (current is None or set(found.families) != set(current.families)):
            starts.append((k, found))
        current = found
    episodes = []
    for n, (k, collapse) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(known)
        following = known[k + 1 : end]
        nudge = next((j for j, a in enumerate(following) if a.nudged), None)
        since = [] if nudge is None else following[nudge:]
        after = [a for a in since if a.ok][:window]
        episodes.append(
            CollapseEpisode(
                family=collapse.families,
                at=known[k].iteration,
                window=window,
                first_nudge=None if nudge is None else following[nudge].iteration,
                after=len(after),
                escaped=sum(a.families is not None and set(a.families) != set(collapse.families) for a in after),
                best_before=_best(known[: k + 1] + following[: nudge or 0]),
                best_after=None if nudge is None else _best(since),
            )
        )
    return tuple(episodes)
