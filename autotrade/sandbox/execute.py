"""Run a candidate block: features on a copy of the frame, then one signal per bar.

This module runs INSIDE the sandboxed worker child (see child.py) and is pure: it touches no
file, no environment and no global state. It is not a security boundary by itself; the
restricted builtins only keep honest code on the documented surface and make mistakes
(an `import os`, an `open`) fail with a message the model can act on.
"""

from __future__ import annotations

import builtins
import math
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from autotrade.contract import ALLOWED_MODULES, BUY, FUNCTIONS, HOLD, MODULES, SELL, SIGNALS
from autotrade.errors import CandidateError
from autotrade.untrusted import clean_text, first_unsafe

CANDIDATE_FILENAME = "<candidate>"
_PROVIDED = {"numpy": np, "pandas": pd, "math": math}  # each allowed module, as the block's namespace holds it
MESSAGE_LIMIT = 2_000  # characters of an exception message kept (a candidate may raise huge ones)
TRACEBACK_LIMIT = 20  # candidate frames kept (deep recursion would otherwise flood the record)

_SAFE_BUILTIN_NAMES = (
    # values and types
    "None",
    "True",
    "False",
    "Ellipsis",
    "NotImplemented",
    "bool",
    "int",
    "float",
    "complex",
    "str",
    "bytes",
    "tuple",
    "list",
    "dict",
    "set",
    "frozenset",
    "range",
    "slice",
    "object",
    "type",
    "property",
    "staticmethod",
    "classmethod",
    "super",
    # functions
    "abs",
    "all",
    "any",
    "bin",
    "callable",
    "chr",
    "divmod",
    "enumerate",
    "filter",
    "format",
    "hash",
    "hex",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "map",
    "max",
    "min",
    "next",
    "oct",
    "ord",
    "pow",
    "print",
    "repr",
    "reversed",
    "round",
    "sorted",
    "sum",
    "zip",
    "hasattr",
    "id",
    # exceptions a strategy may raise or catch
    "BaseException",
    "Exception",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "FloatingPointError",
    "IndexError",
    "KeyError",
    "LookupError",
    "NameError",
    "NotImplementedError",
    "OverflowError",
    "RuntimeError",
    "StopIteration",
    "TypeError",
    "ValueError",
    "ZeroDivisionError",
    "Warning",
    "RuntimeWarning",
    "UserWarning",
    "FutureWarning",
    "DeprecationWarning",
    # class statements need it
    "__build_class__",
)


def _restricted_import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> types.ModuleType:
    """`import numpy as np`, `import pandas as pd`, `import math`, `from math import sqrt`: nothing else."""
    root = name.partition(".")[0]
    if level != 0 or root not in ALLOWED_MODULES:
        raise ImportError(f"import of '{name}' is not allowed: only numpy (np), pandas (pd) and math are available")
    return builtins.__import__(name, globals, locals, fromlist, level)


def bar_label(stamp: pd.Timestamp) -> str:
    """A bar's date, with the time only when the bar has one (intraday data)."""
    return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)


def safe_builtins() -> dict[str, Any]:
    """A fresh builtins dict: the harmless builtins plus an import limited to numpy, pandas and math."""
    table = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
    table["__import__"] = _restricted_import
    return table


class ColumnKeyError(KeyError):
    """A missing column in a Row; prints its message without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0])


class Row:
    """One bar as strategy_logic sees it: `row['Close']`, `row.Close`, `row.get`, `'X' in row`, `row.name`.

    Values are plain Python floats (or whatever scalar the column holds), so `pd.isna`,
    `np.isnan` and `math.isnan` work on them. Built per bar from shared column lists: no
    pandas object per bar, which is what makes this ~40x faster than `iterrows`.
    """

    __slots__ = ("_values", "_at")
    _positions: dict[str, int] = {}
    _columns: tuple[str, ...] = ()
    _dates: pd.DatetimeIndex = pd.DatetimeIndex([])

    def __init__(self, values: tuple[Any, ...], at: int) -> None:
        self._values = values
        self._at = at

    def _missing(self, key: object) -> KeyError:
        return ColumnKeyError(f"column {key!r} is not in the row; available columns: {', '.join(self._columns)}")

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[self._positions[key]]
        except (KeyError, TypeError):
            raise self._missing(key) from None

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[self._positions[key]]
        except KeyError:
            raise AttributeError(
                f"row has no attribute or column {key!r}; available columns: {', '.join(self._columns)}"
            ) from None

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("the row is read-only: compute new columns in generate_features")

    def __contains__(self, key: object) -> bool:
        return key in self._positions

    def __iter__(self) -> Iterator[Any]:
        """Iterate over values, as a pandas Series does."""
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        pairs = ", ".join(f"{c}={v!r}" for c, v in zip(self._columns, self._values, strict=True))
        return f"Row({bar_label(self.name)}: {pairs})"

    def get(self, key: str, default: Any = None) -> Any:
        """The column's value, or `default` when the row has no such column."""
        position = self._positions.get(key)
        return default if position is None else self._values[position]

    def keys(self) -> list[str]:
        """The column names, in frame order."""
        return list(self._columns)

    def items(self) -> list[tuple[str, Any]]:
        """(column, value) pairs, in frame order."""
        return list(zip(self._columns, self._values, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dict."""
        return dict(zip(self._columns, self._values, strict=True))

    @property
    def name(self) -> pd.Timestamp:
        """The bar's date."""
        return self._dates[self._at]

    @property
    def index(self) -> list[str]:
        """The column names (a Series' index is its labels)."""
        return list(self._columns)

    @property
    def values(self) -> np.ndarray:
        """The values as a numpy array (float64 when every column is numeric)."""
        return np.array(self._values)

    @property
    def loc(self) -> Row:
        """`row.loc['Close']` works like `row['Close']`."""
        return self

    at = loc


def compile_block(source: str) -> types.CodeType:
    """Compile the block under the candidate's filename, so tracebacks can be trimmed to its lines."""
    try:
        return compile(source, CANDIDATE_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise CandidateError(f"line {exc.lineno}: {exc.msg}", status="syntax_error", error_type="SyntaxError") from None
    except ValueError as exc:  # e.g. null bytes in the source
        raise CandidateError(str(exc), status="syntax_error", error_type="ValueError") from None


def exec_block(code: types.CodeType | str, source: str | None = None) -> dict[str, Any]:
    """Run the block's top level in a fresh namespace holding pd, np and math; return the namespace."""
    if isinstance(code, str):
        source, code = code, compile_block(code)
    namespace: dict[str, Any] = {
        "__builtins__": safe_builtins(),
        "__name__": "candidate",
        **{alias: _PROVIDED[module] for alias, module in MODULES.items()},
    }
    try:
        exec(code, namespace)
    except BaseException as exc:
        raise candidate_error(exc, source or "", "while running the block's top level") from None
    for name in FUNCTIONS:
        if not callable(namespace.get(name)):
            raise CandidateError(
                f"the block must define a function {name}()", status="runtime_error", error_type="NameError"
            )
    return namespace


def compute_features_and_signals(
    namespace: dict[str, Any], frame: pd.DataFrame, source: str, code: types.CodeType | None = None
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Features from generate_features on a copy of `frame`, then strategy_logic per bar.

    Returns (features, signals, warnings): signals are float64 in {-1, 0, 1} (None/NaN mapped
    to 0 = hold). A generate_features that returns None is forgiven (replies often forget
    `return df`): the copy it modified in place is used, and a warning says so.

    The signals come from strategy_logic of a FRESH namespace (the block's top level run again,
    from `code` when given), so they are a function of the feature frame alone: module state
    that generate_features filled (a dict of tomorrow's closes, the number of bars) cannot carry
    the future into them, and a block whose signals change with that state is told so (status
    lookahead). State the namespaces share (module objects) is the look-ahead gate's to catch.
    """
    features, warnings = compute_features(namespace, frame, source)
    return features, state_free_signals(namespace, features, source, code), warnings


def state_free_signals(
    namespace: dict[str, Any], features: pd.DataFrame, source: str, code: types.CodeType | None = None
) -> np.ndarray:
    """strategy_logic's signals from a fresh namespace; lookahead when they differ from `namespace`'s (its state)."""
    fresh = exec_block(code if code is not None else source, source)
    outcomes: list[np.ndarray | CandidateError] = []
    for space in (fresh, namespace):
        try:
            outcomes.append(compute_signals(space, features, source))
        except CandidateError as exc:
            outcomes.append(exc)
    signals, with_state = outcomes
    if isinstance(signals, CandidateError) and isinstance(with_state, CandidateError):
        raise signals  # the block's own error, with or without the state
    if (
        isinstance(signals, CandidateError)
        or isinstance(with_state, CandidateError)
        or not np.array_equal(signals, with_state)
    ):
        raise CandidateError(
            "look-ahead: strategy_logic depends on module state that generate_features left "
            "behind (a global dict, list or counter filled from the whole history can carry "
            "future bars into the signals); compute such values as columns of df instead",
            status="lookahead",
            error_type=None,
        )
    assert isinstance(signals, np.ndarray)
    return signals


def compute_features(
    namespace: dict[str, Any], frame: pd.DataFrame, source: str = "", copy: bool = True
) -> tuple[pd.DataFrame, list[str]]:
    """generate_features on a copy of `frame` (on `frame` itself when the caller has no other use for it),
    checked: same index, unique printable string columns."""
    warnings: list[str] = []
    index = frame.index  # immutable: what the frame had, whatever generate_features does to it in place
    given = frame.copy() if copy else frame
    try:
        features = namespace["generate_features"](given)
    except BaseException as exc:
        raise candidate_error(exc, source, "in generate_features", hint_columns=list(frame.columns)) from None
    if features is None:
        features = given
        warnings.append("generate_features returned None; used the frame it modified in place (add `return df`)")
    _check_features(features, index)
    return features, warnings


def compute_signals(namespace: dict[str, Any], features: pd.DataFrame, source: str = "") -> np.ndarray:
    """strategy_logic of `namespace` once per bar of `features`, from a freshly seeded legacy numpy RNG."""
    np.random.seed(0)  # a global RNG that generate_features advanced must not carry information either
    return signals_of_rows(namespace, features, source)


def _check_features(features: object, index: pd.DatetimeIndex) -> None:
    """generate_features must give back a DataFrame on the same dates (`index`), with unique string column names."""

    def bad(message: str) -> CandidateError:
        return CandidateError(message, status="runtime_error", error_type="TypeError")

    if not isinstance(features, pd.DataFrame):
        raise bad(
            f"generate_features must return a pandas DataFrame (the frame it was given, with columns added); "
            f"it returned {type(features).__name__}"
        )
    if not features.index.equals(index):
        span = f"{len(index)} rows from {bar_label(index[0])} to {bar_label(index[-1])}" if len(index) else "0 rows"
        got = len(features.index)
        hint = (
            "; fill or keep NaN instead of dropping rows (no dropna, no slicing)"
            if got < len(index)
            else "; keep the frame's DatetimeIndex (no reset_index, set_index, sorting or resampling)"
        )
        raise bad(
            f"generate_features must return a frame with the same index as its input ({span}); "
            f"it returned {got} rows{'' if got != len(index) else ' with a different index'}{hint}"
        )
    names = list(features.columns)
    odd = [c for c in names if not isinstance(c, str)]
    if odd:
        raise bad(f"column names must be strings; got {odd[0]!r} ({type(odd[0]).__name__})")
    unsafe = next((c for c in names if first_unsafe(c) is not None), None)
    if unsafe is not None:
        raise bad(
            f"column names must be printable text; {clean_text(unsafe)!r} holds the control character "
            f"{first_unsafe(unsafe)}"
        )
    if len(set(names)) != len(names):
        dup = next(c for c in names if names.count(c) > 1)
        raise bad(f"generate_features returned two columns named {dup!r}")


def _row_class(features: pd.DataFrame) -> type[Row]:
    """A Row subclass bound to this frame's columns and dates (class attributes: one lookup per access)."""
    columns = tuple(features.columns)
    return type(
        "Row",
        (Row,),
        {
            "__slots__": (),
            "_positions": {c: i for i, c in enumerate(columns)},
            "_columns": columns,
            "_dates": features.index,
        },
    )


def signals_of_rows(namespace: dict[str, Any], features: pd.DataFrame, source: str, start: int = 0) -> np.ndarray:
    """strategy_logic of `namespace` once per bar of `features` from row `start` on, with a light Row; normalised.

    Called with successive `start`s on growing frames (the look-ahead gate), it continues one pass in date order.
    """
    strategy = namespace["strategy_logic"]
    row_class = _row_class(features)
    raw: list[Any] = []
    append = raw.append
    rows = _row_values(features, start)
    at = start
    try:
        for at, values in enumerate(rows, start=start):
            append(strategy(row_class(values, at)))
    except BaseException as exc:
        when = bar_label(features.index[at]) if len(features) > at else "?"
        raise candidate_error(exc, source, f"in strategy_logic on {when}") from None
    return normalise_signals(raw, features.index[start:])


def _row_values(features: pd.DataFrame, start: int) -> Iterator[tuple[Any, ...]]:
    """Each bar's values from row `start` on, as tuples of the Python scalars `Series.tolist()` gives.

    Plain numbers take one conversion of the rows, not one per column: numpy boxes each value as the
    same Python float, int or bool as tolist; the other dtypes (Timestamps, strings...) go column by column.
    """
    part = features.iloc[start:] if start else features
    if len(part.columns) and all(isinstance(dtype, np.dtype) and dtype.kind in "biuf" for dtype in part.dtypes):
        return map(tuple, part.to_numpy(dtype=object).tolist())
    columns = [part[c].tolist() for c in part.columns]
    return zip(*columns, strict=True) if columns else iter([()] * len(part))


_PLAIN_SIGNAL_TYPES = frozenset({int, float, bool, type(None)})


def _is_signal_type(kind: type) -> bool:
    return kind in _PLAIN_SIGNAL_TYPES or issubclass(kind, (np.integer, np.floating, np.bool_))


def normalise_signals(raw: list[Any], dates: pd.DatetimeIndex) -> np.ndarray:
    """Map strategy_logic's return values to float64 in {-1, 0, 1}; None and NaN are hold (0).

    Accepted: int, bool, float and numpy integer/float/bool scalars equal to -1, 0 or 1.
    Anything else raises CandidateError(status="bad_signal") naming the value, its type and the date.
    """
    kinds: dict[type, bool] = {}
    for at, value in enumerate(raw):
        kind = type(value)
        ok = kinds.get(kind)
        if ok is None:
            ok = kinds[kind] = _is_signal_type(kind)
        if not ok:
            raise _bad_signal(value, dates[at])
    try:
        signals = np.array(raw, dtype=np.float64) if raw else np.zeros(0)
    except (OverflowError, ValueError, TypeError):  # an int too large for a float
        at = next(i for i, v in enumerate(raw) if not _fits_float(v))
        raise _bad_signal(raw[at], dates[at]) from None
    signals[np.isnan(signals)] = 0.0
    wrong = np.flatnonzero(np.isin(signals, sorted(SIGNALS), invert=True))
    if wrong.size:
        raise _bad_signal(raw[wrong[0]], dates[wrong[0]])
    return signals


def _fits_float(value: Any) -> bool:
    try:
        float(value if value is not None else 0)
    except OverflowError:
        return False
    return True


def _bad_signal(value: Any, date: pd.Timestamp) -> CandidateError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return CandidateError(
        f"strategy_logic returned {shown} ({type(value).__name__}) on {bar_label(date)}; "
        f"it must return {BUY} (buy), {SELL} (sell) or {HOLD} (hold)",
        status="bad_signal",
        error_type=None,
    )


def candidate_error(
    exc: BaseException, source: str, where: str, hint_columns: list[str] | None = None
) -> CandidateError:
    """A CandidateError for an exception raised by candidate code, traceback trimmed to the block's lines."""
    if isinstance(exc, CandidateError):
        return exc
    status = "memory" if isinstance(exc, MemoryError) else "runtime_error"
    error_type = "KeyError" if isinstance(exc, ColumnKeyError) else type(exc).__name__
    try:
        detail = str(exc)
    except Exception:  # a candidate exception whose __str__ itself fails
        detail = "<unprintable>"
    if len(detail) > MESSAGE_LIMIT:
        detail = detail[:MESSAGE_LIMIT] + "..."
    frames = _candidate_frames(exc)
    lines = source.splitlines()
    trace = ["Traceback (candidate lines only):"]
    for lineno, function in frames[-TRACEBACK_LIMIT:]:
        trace.append(f"  line {lineno}, in {function}")
        if 0 < lineno <= len(lines):
            trace.append(f"    {lines[lineno - 1].strip()}")
    trace.append(f"{error_type}: {detail}" if detail else error_type)
    place = f"line {frames[-1][0]}, " if frames else ""
    message = f"{error_type}: {detail} ({place}{where})" if detail else f"{error_type} ({place}{where})"
    if isinstance(exc, KeyError) and not isinstance(exc, ColumnKeyError) and hint_columns is not None:
        message += f"; the input frame's columns are: {', '.join(hint_columns)}"
    if status == "memory":
        message = f"out of memory ({place}{where})"
    return CandidateError(message, status=status, error_type=error_type, traceback="\n".join(trace))


def _candidate_frames(exc: BaseException) -> list[tuple[int, str]]:
    """(line, function) of each traceback entry that is the candidate's own code, outermost first."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == CANDIDATE_FILENAME:
            frames.append((tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return frames
