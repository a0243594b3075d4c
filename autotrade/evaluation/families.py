"""Indicator families of an agent block, read from its syntax tree (nothing is run).

A heuristic: it recognises the usual spellings of each indicator (a call chain, a formula shape, or a telling
name such as `rsi` or `macd`). The research loop reads it to see the search collapse into one family (and to
say so in the next prompt); the report reads it to show which indicators a run used.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable

from autotrade.evaluation.novelty import INPUT_COLUMNS

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

# Indicator families (the report's vocabulary), each recognised by the rules in `tag_families`.
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


def tag_families(tree: ast.AST, operations: Counter[str], columns: frozenset[str]) -> frozenset[str]:
    """The indicator families a parsed block uses (see FAMILIES), from its operations and OHLCV columns."""
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
    return frozenset(tags)


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


def operations_and_columns(tree: ast.AST) -> tuple[Counter[str], frozenset[str]]:
    """How often a parsed block calls each of OPERATIONS, and the OHLCV columns it reads."""
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
    return operations, frozenset(columns)


def block_families(block: str) -> tuple[str, ...] | None:
    """The indicator families an agent block uses, in FAMILIES order; None when it does not parse."""
    try:
        tree = ast.parse(block)
    except (SyntaxError, ValueError):
        return None
    operations, columns = operations_and_columns(tree)
    return _in_order(tag_families(tree, operations, columns))


def _in_order(families: Iterable[str]) -> tuple[str, ...]:
    """Families in FAMILIES order (one spelling of a set, for records and prompts)."""
    chosen = set(families)
    return tuple(f for f in FAMILIES if f in chosen)


def family_name(families: Iterable[str]) -> str:
    """A structure family in words: its indicator families joined by ' + ' ('moving average + crossover')."""
    return " + ".join(_in_order(families))
