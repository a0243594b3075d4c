"""How varied a run's strategies were: indicator families from the AST, distinct strategies, correlated positions.

The original experiment found its model copied the prompt's example 96% of the time; these figures make that
kind of collapse visible. Detection reads the agent block's syntax tree only (nothing is run), so it is a
heuristic: it recognises the usual spellings of each indicator (a call chain, a formula shape, or a telling
name such as `rsi` or `macd`).
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from autotrade.evaluation.novelty import INPUT_COLUMNS, structure_hash

# Methods and numpy functions worth counting as "operations" (anything else is plumbing: append, get, ...).
OPERATIONS = frozenset(
    {
        "rolling",
        "ewm",
        "expanding",
        "mean",
        "std",
        "var",
        "max",
        "min",
        "median",
        "sum",
        "quantile",
        "rank",
        "shift",
        "diff",
        "pct_change",
        "clip",
        "where",
        "mask",
        "abs",
        "cumsum",
        "cummax",
        "cummin",
        "cumprod",
        "log",
        "sqrt",
        "exp",
        "sign",
        "maximum",
        "minimum",
        "fillna",
        "ffill",
        "bfill",
        "apply",
        "corr",
        "cov",
        "skew",
        "kurt",
        "idxmax",
        "idxmin",
        "round",
        "between",
        "resample",
        "groupby",
    }
)

# Indicator families (the report's vocabulary), each recognised by the rules in `_tags`.
FAMILIES = (
    "moving average",
    "crossover",
    "ewm",
    "RSI-like",
    "MACD-like",
    "breakout",
    "volatility",
    "mean reversion",
    "momentum",
    "volume",
    "calendar",
)

_NAME_HINTS: dict[str, re.Pattern[str]] = {
    "moving average": re.compile(r"(^|_)(s|e|w)?ma\d*($|_)|sma|ema|moving", re.I),
    "RSI-like": re.compile(r"rsi|stoch|williams|oscillat", re.I),
    "MACD-like": re.compile(r"macd|ppo", re.I),
    "breakout": re.compile(r"breakout|donchian|channel|(^|_)(hh|ll)($|_)|highest|lowest", re.I),
    "volatility": re.compile(r"atr|true_range|volatil|(^|_)vol($|_)|bollinger|(^|_)bb|std|sigma", re.I),
    "mean reversion": re.compile(r"z_?score|revert|reversion|bollinger|(^|_)bb|band|deviation", re.I),
    "momentum": re.compile(r"mom|roc|rate_of_change|return", re.I),
}
_CALENDAR_ATTRS = frozenset(
    {"dayofweek", "day_of_week", "weekday", "month", "dayofyear", "day_of_year", "quarter", "week"}
)


@dataclass(frozen=True)
class BlockProfile:
    """What one agent block uses: indicator families, operation counts, OHLCV columns, and its structure hash."""

    families: frozenset[str]
    operations: Mapping[str, int]
    columns: frozenset[str]
    structure: str | None  # normalised-AST hash (12 hex digits); None when the block does not parse


def _call_chain(node: ast.AST) -> list[str]:
    """Method names along a call chain, outermost last: `x.rolling(5).mean()` → ['rolling', 'mean']."""
    names: list[str] = []
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            break
    return names[::-1]


def _contains_call(node: ast.AST, method: str) -> bool:
    """True when `method` is called anywhere inside node."""
    return any(
        isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == method
        for sub in ast.walk(node)
    )


def _mentions(node: ast.AST, word: str) -> bool:
    """True when node calls `word`, or names a variable, attribute or column holding it (`x.std()`, `row['std20']`)."""
    for sub in ast.walk(node):
        text = (
            sub.id
            if isinstance(sub, ast.Name)
            else sub.attr
            if isinstance(sub, ast.Attribute)
            else sub.value
            if isinstance(sub, ast.Constant)
            else None
        )
        if isinstance(text, str) and word in text.lower():
            return True
    return False


def _identifiers(tree: ast.AST) -> set[str]:
    """Variable, function, argument and attribute names, and string constants (feature column names)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.FunctionDef):
            found.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) <= 40:
            found.add(node.value)
    found -= {"generate_features", "strategy_logic", "df", "row"}
    return found


def _tags(tree: ast.AST, operations: Counter[str], columns: set[str]) -> set[str]:
    """The indicator families a parsed block uses (see FAMILIES)."""
    tags: set[str] = set()
    names = _identifiers(tree)
    for family, pattern in _NAME_HINTS.items():
        if any(pattern.search(name) for name in names):
            tags.add(family)

    averages = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        chain = _call_chain(node)
        if len(chain) >= 2 and chain[-2] in ("rolling", "ewm") and chain[-1] == "mean":
            averages += 1
        if len(chain) >= 2 and chain[-2] in ("rolling", "expanding") and chain[-1] in ("max", "min"):
            tags.add("breakout")
        if len(chain) >= 2 and chain[-2] in ("rolling", "ewm", "expanding") and chain[-1] in ("std", "var"):
            tags.add("volatility")
    if averages:
        tags.add("moving average")
    if operations["ewm"]:
        tags.add("ewm")
    if operations["cummax"] or operations["cummin"]:
        tags.add("breakout")
    if operations["pct_change"]:
        tags.add("momentum")

    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            # (x - mean) / std: a z-score, the usual mean-reversion signal (the std often sits in a variable).
            if (
                isinstance(node.left, ast.BinOp)
                and isinstance(node.left.op, ast.Sub)
                and (_mentions(node.right, "std") or (operations["std"] and not isinstance(node.right, ast.Constant)))
            ):
                tags.add("mean reversion")
            # x / x.shift(n): a rate of change.
            if _contains_call(node.right, "shift"):
                tags.add("momentum")
            # average gain / average loss: the RSI construction.
            if (operations["clip"] or operations["where"] or operations["maximum"]) and operations["diff"]:
                tags.add("RSI-like")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
            if _contains_call(node.left, "ewm") and _contains_call(node.right, "ewm"):
                tags.add("MACD-like")
            if _contains_call(node.right, "shift") or _contains_call(node.left, "shift"):
                tags.add("momentum")
            strings = {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
            if {"High", "Low"} <= strings:
                tags.add("volatility")  # the high-low range behind ATR
        if isinstance(node, ast.Attribute) and node.attr in _CALENDAR_ATTRS:
            tags.add("calendar")
    if operations["ewm"] >= 3:
        tags.add("MACD-like")
    if operations["diff"] and not {"RSI-like"} & tags:
        tags.add("momentum")
    if averages >= 2 and _compares_two_series(tree):
        tags.add("crossover")
    if "Volume" in columns:
        tags.add("volume")
    return tags


def _compares_two_series(tree: ast.AST) -> bool:
    """True when some comparison has non-constant expressions on both sides (one series against another)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if (
                sum(
                    not isinstance(side, ast.Constant)
                    and not (isinstance(side, ast.UnaryOp) and isinstance(side.operand, ast.Constant))
                    for side in sides
                )
                >= 2
            ):
                return True
    return False


def profile_block(block: str) -> BlockProfile:
    """Families, operations, columns and structure hash of one agent block (empty profile when it does not parse)."""
    try:
        tree = ast.parse(block)
    except (SyntaxError, ValueError):
        return BlockProfile(frozenset(), {}, frozenset(), None)
    operations: Counter[str] = Counter()
    columns: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in OPERATIONS:
                operations[name] += 1
        elif isinstance(node, ast.Constant) and node.value in INPUT_COLUMNS:
            columns.add(str(node.value))
        elif isinstance(node, ast.Attribute) and node.attr in INPUT_COLUMNS:
            columns.add(node.attr)  # df.Close
    return BlockProfile(
        families=frozenset(_tags(tree, operations, columns)),
        operations=dict(operations),
        columns=frozenset(columns),
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
