"""What makes two strategies the same: a block's structure up to cosmetics, and validation positions that move together.

The report counts distinct strategies with the structure; the research loop refuses a proposal that repeats one
already tried with it (before evaluating) and with the positions (after). Both live with the fixed metric, so the
proposer cannot redefine what counts as new.

Cosmetics are names (variables, functions, feature columns), comments, docstrings, the order of function
definitions and of independent assignments, and whether a pandas parameter is passed by position or by keyword
(`rolling(20)` is `rolling(window=20)`). Numbers are cosmetic for the report's families (an SMA 10/30 and an SMA
20/50 crossover are one strategy) and kept for the loop's twins, whose result is reused as is: only a block that
would compute the same positions may borrow another's.
"""

from __future__ import annotations

import ast
import base64
import builtins
import copy
import hashlib
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from autotrade.contract import MODULES
from autotrade.data.ohlcv import COLUMN_ORDER
from autotrade.data.windows import Window
from autotrade.evaluation.evaluate import Evaluation

INPUT_COLUMNS = frozenset(COLUMN_ORDER)  # input columns: their names say what is computed, so they stay
# Names the block does not define (builtins such as max and min, the modules it is given): they say what is
# computed, so they stay too. A block that rebinds one only hides a twin, never makes one.
OUTSIDE_NAMES = frozenset(dir(builtins)) | frozenset(MODULES)
TWIN_CORRELATION = 0.99  # validation positions correlated at least this much are one strategy
MAX_VARIANTS = 24  # orderings of same-looking statements tried for the canonical form; beyond it, the given order

# Leading parameters of the pandas methods strategies use, in signature order: a positional argument becomes its
# keyword. Only the first positional parameter of ewm is `com`; span, halflife and alpha stay distinct keywords.
PARAMETERS: dict[str, tuple[str, ...]] = {
    "rolling": ("window", "min_periods", "center", "win_type", "on", "axis", "closed"),
    "expanding": ("min_periods", "axis", "method"),
    "ewm": ("com", "span", "halflife", "alpha", "min_periods", "adjust", "ignore_na"),
    "shift": ("periods", "freq", "axis", "fill_value"),
    "diff": ("periods", "axis"),
    "pct_change": ("periods",),
    "quantile": ("q",),
    "clip": ("lower", "upper"),
    "round": ("decimals",),
    "fillna": ("value",),
}


class _Normaliser(ast.NodeTransformer):
    """Renames identifiers and feature-column strings (those keying a subscript) by order of first use, blanks numbers
    unless kept, and writes every known pandas parameter as a keyword, keywords sorted.

    OHLCV column names, attributes (the operations) and keyword names stay, since they change what is computed.
    """

    def __init__(self, keep_numbers: bool) -> None:
        self.aliases: dict[str, str] = {}
        self.keep_numbers = keep_numbers
        self.columns: set[int] = set()  # the string constants that key a subscript: feature-column names

    def _alias(self, key: str) -> str:
        return self.aliases.setdefault(key, f"v{len(self.aliases)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id not in OUTSIDE_NAMES:
            node.id = self._alias(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._alias(node.arg)
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._alias(node.name)
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        params = PARAMETERS.get(node.func.attr, ()) if isinstance(node.func, ast.Attribute) else ()
        if params and not any(isinstance(a, ast.Starred) for a in node.args):
            named = [ast.keyword(arg=name, value=value) for name, value in zip(params, node.args, strict=False)]
            node.args = node.args[len(named) :]
            node.keywords = named + node.keywords
        # Keyword order never changes a call's meaning; `**mapping` (no name) keeps its place at the end.
        node.keywords = sorted((k for k in node.keywords if k.arg), key=lambda k: str(k.arg)) + [
            k for k in node.keywords if not k.arg
        ]
        self.generic_visit(node)
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.columns.update(id(sub) for sub in ast.walk(node.slice) if isinstance(sub, ast.Constant))
        self.generic_visit(node)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, str):
            # Only a column's name is cosmetic: any other string (`closed="left"`, `agg("max")`, a resample rule)
            # says what is computed.
            cosmetic = id(node) in self.columns and value not in INPUT_COLUMNS
            node.value = self._alias("str:" + value) if cosmetic else value
        elif isinstance(value, int | float | complex) and not isinstance(value, bool) and not self.keep_numbers:
            node.value = 0
        return node


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


# -- the order of independent assignments ----------------------------------------------------------------------

# What a statement touches: (name, column) for a constant-string subscript `name["column"]`, (name, None) for the
# whole name. A whole name overlaps each of its columns.
_Access = tuple[str, str | None]


def _column(node: ast.AST) -> _Access | None:
    """`name["column"]` as an access, else None."""
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return (node.value.id, node.slice.value)
    return None


def _reads(node: ast.AST, local: frozenset[str]) -> tuple[set[_Access], set[_Access]] | None:
    """(reads, writes) of an expression: a method called on a local name (`x.pop()`) may change it, so it writes
    that name. None when it may write otherwise (a walrus, `inplace=`)."""
    reads: set[_Access] = set()
    writes: set[_Access] = set()
    inside_columns: set[int] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.NamedExpr) or (isinstance(sub, ast.keyword) and sub.arg == "inplace"):
            return None
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and isinstance(sub.func.value, ast.Name):
            if sub.func.value.id in local:
                writes.add((sub.func.value.id, None))
        access = _column(sub)
        if access is not None:
            reads.add(access)
            inside_columns.add(id(sub.value))
        elif isinstance(sub, ast.Name) and id(sub) not in inside_columns:
            reads.add((sub.id, None))
    return reads, writes


def _accesses(statement: ast.stmt, local: frozenset[str]) -> tuple[set[_Access], set[_Access]] | None:
    """(reads, writes) of an assignment whose targets are names or `name["column"]`; None for anything else, which
    keeps its place. `local`: the function's own names (its arguments and what it assigns)."""
    if isinstance(statement, ast.Assign):
        targets, value = statement.targets, statement.value
    elif isinstance(statement, ast.AugAssign | ast.AnnAssign) and statement.value is not None:
        targets, value = [statement.target], statement.value
    else:
        return None
    writes: set[_Access] = set()
    for target in targets:
        for element in target.elts if isinstance(target, ast.Tuple | ast.List) else [target]:
            access = (element.id, None) if isinstance(element, ast.Name) else _column(element)
            if access is None:
                return None
            writes.add(access)
    touched = _reads(value, local)
    if touched is None:
        return None
    reads, called = touched
    if isinstance(statement, ast.AugAssign):
        reads |= writes
    return reads, writes | called


def _overlap(a: _Access, b: _Access) -> bool:
    return a[0] == b[0] and (a[1] is None or b[1] is None or a[1] == b[1])


def _ordered(first: tuple[set[_Access], set[_Access]], second: tuple[set[_Access], set[_Access]]) -> bool:
    """True when swapping the two could change what they compute: one writes what the other reads or writes."""
    (r1, w1), (r2, w2) = first, second
    return any(_overlap(w, o) for w in w1 for o in r2 | w2) or any(_overlap(w, o) for w in w2 for o in r1)


def _local_key(statement: ast.stmt, keep_numbers: bool) -> str:
    """The statement's form with its own names aliased: the same whatever the block calls things."""
    return ast.dump(_Normaliser(keep_numbers).visit(copy.deepcopy(statement)), include_attributes=False)


def _schedule(function: ast.FunctionDef, keep_numbers: bool) -> list[list[ast.stmt]]:
    """A function body in canonical order, as slots: statements in one slot look alike and may come in any order.

    Within each run of assignments, the dependencies (who must precede whom) are what any faithful reordering
    keeps; the canonical order takes, each time, every ready statement of the smallest key.
    """
    arguments = function.args
    local = frozenset(
        [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
        + [n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    )
    slots: list[list[ast.stmt]] = []
    run: list[tuple[ast.stmt, tuple[set[_Access], set[_Access]]]] = []

    def flush() -> None:
        keys = [_local_key(s, keep_numbers) for s, _ in run]
        before = [{j for j in range(i) if _ordered(run[j][1], run[i][1])} for i in range(len(run))]
        placed: set[int] = set()
        while len(placed) < len(run):
            ready = [i for i in range(len(run)) if i not in placed and before[i] <= placed]
            smallest = min(keys[i] for i in ready)
            slot = [i for i in ready if keys[i] == smallest]
            slots.append([run[i][0] for i in slot])
            placed.update(slot)
        run.clear()

    for statement in (s for s in function.body if not _is_docstring(s)):
        accesses = _accesses(statement, local)
        if accesses is None:
            flush()
            slots.append([statement])
        else:
            run.append((statement, accesses))
    flush()
    return slots


def _variants(tree: ast.Module, keep_numbers: bool) -> Iterator[ast.Module]:
    """The tree with each function body in canonical order: one copy per ordering of its look-alike statements
    (only the given order when there would be more than MAX_VARIANTS)."""
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
    schedules = [_schedule(function, keep_numbers) for function in functions]
    slots = [slot for schedule in schedules for slot in schedule]
    choices = [list(itertools.permutations(slot)) for slot in slots]
    if math.prod(len(c) for c in choices) > MAX_VARIANTS:
        choices = [[tuple(slot)] for slot in slots]
    for picked in itertools.product(*choices):
        chosen = iter(picked)
        for function, schedule in zip(functions, schedules, strict=True):
            function.body = [s for _ in schedule for s in next(chosen)] or [ast.Pass()]
        yield copy.deepcopy(tree)


def _sorted_definitions(body: list[ast.stmt], keep_numbers: bool) -> list[ast.stmt]:
    """Module-level statements with each run of consecutive function definitions in canonical order: a `def` runs
    nothing, so their order never changes what a block computes (unless a name is defined twice: then as given)."""
    names = [s.name for s in body if isinstance(s, ast.FunctionDef)]
    if len(names) != len(set(names)):
        return body
    runs = itertools.groupby(body, key=lambda s: isinstance(s, ast.FunctionDef))
    return [
        s for is_def, run in runs for s in (sorted(run, key=lambda d: _local_key(d, keep_numbers)) if is_def else run)
    ]


def structure_hash(tree: ast.Module, keep_numbers: bool = False) -> str:
    """sha256 (first 12 hex digits) of the normalised syntax tree: docstrings and bare constants dropped, names and
    (unless `keep_numbers`) numbers blanked, pandas parameters as keywords, functions and independent assignments
    in canonical order."""
    module = ast.parse(ast.unparse(tree))
    module.body = _sorted_definitions([s for s in module.body if not _is_docstring(s)], keep_numbers)
    dumped = min(
        ast.dump(_Normaliser(keep_numbers).visit(variant), annotate_fields=False, include_attributes=False)
        for variant in _variants(module, keep_numbers)
    )
    return hashlib.sha256(dumped.encode()).hexdigest()[:12]


def block_structure(block: str) -> str | None:
    """A block's structure with its numbers (what the loop compares twins by); None when it does not parse."""
    try:
        tree = ast.parse(block)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte
        return None
    return structure_hash(tree, keep_numbers=True)


# -- positions ----------------------------------------------------------------------------------------------


def validation_positions(evaluation: Evaluation) -> np.ndarray:
    """The positions an evaluation held on its validation bars, one per bar (the one place that knows where an
    evaluation keeps them): every part's (asset × fold) validation span, in part order."""
    views = [view for _, view in evaluation.part_views()]
    return np.concatenate([view.curves[Window.VAL].position.to_numpy(dtype=float) for view in views])


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two position vectors; 1.0 when equal (a constant one too); None when they differ in
    length or one is constant (it correlates with nothing)."""
    if a.shape != b.shape:
        return None
    if np.array_equal(a, b):
        return 1.0
    if a.std() == 0 or b.std() == 0:
        return None
    value = float(np.corrcoef(a, b)[0, 1])
    return value if math.isfinite(value) else None


def position_twin(positions: np.ndarray, members: Mapping[int, np.ndarray]) -> tuple[int, float] | None:
    """The member (iteration, correlation) whose positions correlate most with `positions`, when that reaches
    TWIN_CORRELATION; None otherwise. Ties go to the first member given (the population's best first)."""
    scored = ((i, correlation(positions, theirs)) for i, theirs in members.items())
    found = [(i, value) for i, value in scored if value is not None and value >= TWIN_CORRELATION]
    return max(found, key=lambda t: t[1], default=None)


def encode_positions(positions: np.ndarray) -> str:
    """A 0/1 position vector as `<bars>:<base64 of its bits>` (about 170 characters for 1,000 bars); ValueError for
    any other value."""
    if not np.isin(positions, (0.0, 1.0)).all():
        raise ValueError("positions must be 0 or 1")
    return f"{positions.size}:{base64.b64encode(np.packbits(positions.astype(np.uint8))).decode()}"


def decode_positions(text: str) -> np.ndarray:
    """The vector encode_positions wrote."""
    bars, _, bits = text.partition(":")
    return np.unpackbits(np.frombuffer(base64.b64decode(bits), dtype=np.uint8))[: int(bars)].astype(float)


def first_twins(entries: Iterable[tuple[int, str | None]]) -> dict[str, int]:
    """Each structure's first iteration, from (iteration, structure) pairs in iteration order."""
    index: dict[str, int] = {}
    for iteration, structure in entries:
        if structure is not None:
            index.setdefault(structure, iteration)
    return index
