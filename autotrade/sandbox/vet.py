"""Static vetting of a candidate block: an allowlist over its syntax tree, with messages the model can act on.

Vetting is the first layer, not the only one: the worker's audit hook, seccomp filter and namespaces assume
it can be bypassed. Its job is to reject early, cheaply (about a millisecond) and precisely what a strategy
never needs, so the model learns what to do instead. Every rejection reads
`line N: <what> is not allowed (<rule>)`, with N counted from the block's first line.

What passes: top-level function definitions, constant assignments, imports of numpy/pandas/math and
docstrings; inside functions ordinary synchronous Python over names the block defines, the allowed builtins
and allowlisted attributes of `np`, `pd` and `math`. Any other attribute is fine unless it is private or on
the denylists below (pandas and numpy I/O, code from strings, namespaces that reach `os`, frames).
Look-ahead is not judged here: `shift(-1)` or `center=True` lagged back afterwards is causal, so the
look-ahead gate, which reruns the block on truncated histories, is the one judge of it.

Code that runs before any harness call is held to constants: top-level values and default values are
literals, arithmetic and module function calls; annotations are names, attributes and subscripts.
pandas methods that look a function NAME up on the object (agg, apply, transform, pivot_table's aggfunc...)
take only functions the vetter can see or literal reducer names, so no name built at run time reaches
`DataFrame.eval` or a writer. The text itself holds no control or bidi characters (they drive terminals
that show these messages, or hide code) and no trade.py delimiter line (the block would be cut there).
"""

from __future__ import annotations

import ast
import builtins
import math
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NoReturn

from autotrade.candidate import is_delimiter_line
from autotrade.contract import ALLOWED_MODULES, BLOCK_START, FUNCTIONS, MODULES, SIGNATURES
from autotrade.errors import CandidateError, UnsafeCodeError
from autotrade.untrusted import UNSAFE_CHARACTERS

REQUIRED_FUNCTIONS = tuple(FUNCTIONS)
# Bounds that keep parsing and vetting cheap whatever the model sends; real strategies are 1-5 KB deep 10-30.
MAX_BLOCK_CHARS = 50_000
MAX_DEPTH = 100

IMPORT_HINT = "only numpy as np, pandas as pd and math are available; they are already imported"

# ---------------------------------------------------------------------------------------------------------
# Modules. The block gets `np`, `pd` and `math`; `import numpy` / `import pandas` may bind the long names.
# A module name may only be the base of an attribute (`np.log(x)`), never passed, stored or returned,
# so `m = np; m.lib` cannot hide a module from the attribute allowlists below.
# ---------------------------------------------------------------------------------------------------------
MODULE_ALIASES = {**MODULES, **{module: module for module in ALLOWED_MODULES}}  # name -> the module it stands for
PROVIDED_NAMES = frozenset(MODULES)
# module -> the names `import module [as name]` may bind.
ALLOWED_IMPORTS = {module: frozenset(n for n, m in MODULE_ALIASES.items() if m == module) for module in ALLOWED_MODULES}

# numpy: arithmetic, ufuncs, reductions and array construction. Not lib, ctypeslib, testing, f2py, I/O,
# random (irreproducible), fft or polynomial (whole-sample transforms nobody needs here).
NUMPY_ATTRIBUTES = frozenset(
    {
        # constants and dtypes
        "nan",
        "inf",
        "pi",
        "e",
        "euler_gamma",
        "newaxis",
        "float64",
        "float32",
        "float16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
        "bool_",
        "integer",
        "floating",
        "number",
        "ndarray",
        "dtype",
        "datetime64",
        "timedelta64",
        # construction and shape
        "array",
        "asarray",
        "asanyarray",
        "arange",
        "linspace",
        "zeros",
        "ones",
        "full",
        "empty",
        "zeros_like",
        "ones_like",
        "full_like",
        "empty_like",
        "eye",
        "identity",
        "copy",
        "concatenate",
        "stack",
        "vstack",
        "hstack",
        "column_stack",
        "append",
        "repeat",
        "tile",
        "reshape",
        "ravel",
        "squeeze",
        "expand_dims",
        "atleast_1d",
        "transpose",
        "flip",
        "roll",
        "sort",
        "argsort",
        "unique",
        "searchsorted",
        "digitize",
        "bincount",
        "histogram",
        "shape",
        "ndim",
        "size",
        "isscalar",
        # elementwise math
        "abs",
        "absolute",
        "fabs",
        "sign",
        "sqrt",
        "cbrt",
        "square",
        "exp",
        "exp2",
        "expm1",
        "log",
        "log1p",
        "log2",
        "log10",
        "power",
        "sin",
        "cos",
        "tan",
        "arcsin",
        "arccos",
        "arctan",
        "arctan2",
        "sinh",
        "cosh",
        "tanh",
        "arcsinh",
        "arccosh",
        "arctanh",
        "degrees",
        "radians",
        "floor",
        "ceil",
        "trunc",
        "rint",
        "round",
        "around",
        "fix",
        "clip",
        "maximum",
        "minimum",
        "fmax",
        "fmin",
        "add",
        "subtract",
        "multiply",
        "divide",
        "true_divide",
        "floor_divide",
        "mod",
        "remainder",
        "fmod",
        "reciprocal",
        "negative",
        "positive",
        "hypot",
        "copysign",
        "signbit",
        "heaviside",
        "logaddexp",
        "nan_to_num",
        # comparison and logic
        "isnan",
        "isinf",
        "isfinite",
        "isclose",
        "allclose",
        "array_equal",
        "isin",
        "where",
        "select",
        "choose",
        "piecewise",
        "logical_and",
        "logical_or",
        "logical_not",
        "logical_xor",
        "greater",
        "greater_equal",
        "less",
        "less_equal",
        "equal",
        "not_equal",
        "all",
        "any",
        "nonzero",
        "flatnonzero",
        "argwhere",
        "count_nonzero",
        # reductions, running statistics, regression
        "sum",
        "prod",
        "mean",
        "median",
        "std",
        "var",
        "min",
        "max",
        "amin",
        "amax",
        "ptp",
        "argmin",
        "argmax",
        "cumsum",
        "cumprod",
        "diff",
        "ediff1d",
        "gradient",
        "percentile",
        "quantile",
        "average",
        "nanmean",
        "nanmedian",
        "nanstd",
        "nanvar",
        "nansum",
        "nanprod",
        "nanmin",
        "nanmax",
        "nanargmin",
        "nanargmax",
        "nancumsum",
        "nancumprod",
        "nanpercentile",
        "nanquantile",
        "corrcoef",
        "cov",
        "correlate",
        "convolve",
        "dot",
        "matmul",
        "inner",
        "outer",
        "trapezoid",
        "interp",
        "polyfit",
        "polyval",
        # helpers that take the block's own callables, and a scoped error-state manager
        "vectorize",
        "apply_along_axis",
        "errstate",
        # submodules, with their own allowlists below
        "linalg",
        "random",
    }
)
NUMPY_LINALG_ATTRIBUTES = frozenset({"norm", "lstsq", "solve", "inv", "pinv", "det"})
# Seeded random numbers are causal and reproducible (the worker seeds the legacy generator before every run).
NUMPY_RANDOM_ATTRIBUTES = frozenset(
    {
        "default_rng",
        "seed",
        "rand",
        "randn",
        "random",
        "normal",
        "uniform",
        "randint",
        "choice",
        "permutation",
        "shuffle",
        "standard_normal",
        "exponential",
        "lognormal",
        "poisson",
        "binomial",
        "beta",
        "gamma",
        "Generator",
        "RandomState",
        "SeedSequence",
        "PCG64",
    }
)
# Calendar offsets for date arithmetic (df.index + pd.offsets.MonthEnd(0)).
PANDAS_OFFSETS_ATTRIBUTES = frozenset(
    {
        "Day",
        "Hour",
        "Minute",
        "BDay",
        "BusinessDay",
        "Week",
        "MonthEnd",
        "MonthBegin",
        "BMonthEnd",
        "BMonthBegin",
        "QuarterEnd",
        "QuarterBegin",
        "BQuarterEnd",
        "YearEnd",
        "YearBegin",
        "BYearEnd",
        "DateOffset",
    }
)

# pandas: constructors, missing-value tests, reshaping and conversions. Not read_*, io, api, core, compat,
# options, plotting, eval, testing, util, ExcelFile/HDFStore (file handles).
PANDAS_ATTRIBUTES = frozenset(
    {
        "Series",
        "DataFrame",
        "Index",
        "DatetimeIndex",
        "RangeIndex",
        "Timestamp",
        "Timedelta",
        "DateOffset",
        "Period",
        "Categorical",
        "IndexSlice",
        "Grouper",
        "NamedAgg",
        "NA",
        "NaT",
        "isna",
        "isnull",
        "notna",
        "notnull",
        "concat",
        "merge",
        "merge_asof",
        "to_numeric",
        "to_datetime",
        "to_timedelta",
        "cut",
        "qcut",
        "date_range",
        "bdate_range",
        "timedelta_range",
        "unique",
        "factorize",
        "get_dummies",
        "melt",
        "pivot",
        "pivot_table",
        "crosstab",
        "infer_freq",
        "offsets",
    }
)

# math: every public name is a pure function or a constant.
MATH_ATTRIBUTES = frozenset(name for name in dir(math) if not name.startswith("_"))

MODULE_ATTRIBUTES = {
    "numpy": NUMPY_ATTRIBUTES,
    "numpy.linalg": NUMPY_LINALG_ATTRIBUTES,
    "numpy.random": NUMPY_RANDOM_ATTRIBUTES,
    "pandas": PANDAS_ATTRIBUTES,
    "pandas.offsets": PANDAS_OFFSETS_ATTRIBUTES,
    "math": MATH_ATTRIBUTES,
}
# What a rejected module attribute should have been, where there is a better answer than the allowlist.
MODULE_HINTS = {
    ("numpy", "NaN"): "use np.nan; np.NaN was removed in NumPy 2",
    ("numpy", "NAN"): "use np.nan; np.NAN was removed in NumPy 2",
    ("numpy", "Inf"): "use np.inf; np.Inf was removed in NumPy 2",
    ("numpy", "float_"): "use np.float64; np.float_ was removed in NumPy 2",
    ("numpy", "trapz"): "use np.trapezoid",
}
MODULE_EXAMPLES = {
    "numpy": "np.where, np.log, np.maximum, np.nan",
    "numpy.linalg": "np.linalg.norm, np.linalg.lstsq",
    "numpy.random": "np.random.default_rng(42), np.random.seed",
    "pandas.offsets": "pd.offsets.MonthEnd, pd.offsets.BDay",
    "pandas": "pd.Series, pd.DataFrame, pd.isna, pd.concat",
    "math": "math.sqrt, math.log",
}

# ---------------------------------------------------------------------------------------------------------
# Attributes of any other object (a frame, a Series, a rolling window, a generator...). Everything not listed
# is allowed: the surface of pandas objects is large and legitimate. Listed are the known routes from an
# ordinary object to files, code strings, the operating system and frames.
# ---------------------------------------------------------------------------------------------------------
# Strings evaluated as code (pd.eval, DataFrame.eval/query, whose engines can be steered).
CODE_FROM_STRING_ATTRIBUTES = frozenset({"eval", "query"})
# Format strings walk attributes and items from inside the string ('{0.__class__}'.format(x)); f-strings
# are vetted like code, so they are the way to build text.
FORMAT_ATTRIBUTES = frozenset({"format", "format_map"})
# numpy and pandas file and network I/O (read_* and the I/O to_* are caught by prefix, below).
FILE_IO_ATTRIBUTES = frozenset(
    {
        "load",
        "loads",
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "fromregex",
        "tofile",
        "dump",
        "dumps",
        "memmap",
        "open_memmap",
        "DataSource",
        "ExcelFile",
        "ExcelWriter",
        "HDFStore",
    }
)
# Namespaces inside numpy and pandas whose plain attributes reach os, subprocess, ctypes and pickle
# (pd.io.common.os, np.lib, np.ctypeslib, ndarray.ctypes), and what they would be used for.
ESCAPE_ATTRIBUTES = frozenset(
    {
        "io",
        "lib",
        "os",
        "sys",
        "ctypes",
        "ctypeslib",
        "testing",
        "compat",
        "core",
        "api",
        "util",
        "builtins",
        "subprocess",
        "shutil",
        "socket",
        "pickle",
        "importlib",
        "f2py",
        "distutils",
        "config",
        "system",
        "popen",
        "environ",
        "cffi",
    }
)
# Plotting, styling and global options: they import matplotlib or jinja2, write files or change the
# process-wide display state.
DISPLAY_ATTRIBUTES = frozenset(
    {
        "plot",
        "plotting",
        "hist",
        "boxplot",
        "style",
        "options",
        "set_option",
        "get_option",
        "reset_option",
        "option_context",
        "describe_option",
        "show_versions",
        "show_config",
        "set_printoptions",
    }
)
# Frames, tracebacks, code objects and the class hierarchy: the walk from a generator to the harness.
INTROSPECTION_ATTRIBUTES = frozenset(
    {
        "mro",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "f_trace",
        "f_lasti",
        "f_lineno",
    }
)
# func_: Cython functions (pandas' Timestamp methods and many more) expose func_globals, func_code...
INTROSPECTION_PREFIXES = ("gi_", "cr_", "ag_", "tb_", "co_", "func_")
# The only to_* names allowed: in-memory conversions (the rest of pandas' to_* write files or clipboards).
CONVERSION_ATTRIBUTES = frozenset(
    {
        "to_numpy",
        "to_list",
        "to_dict",
        "to_frame",
        "to_series",
        "to_records",
        "to_flat_index",
        "to_period",
        "to_timestamp",
        "to_datetime",
        "to_timedelta",
        "to_numeric",
        "to_pydatetime",
        "to_datetime64",
        "to_timedelta64",
        "to_pytimedelta",
        "to_offset",
        "to_julian_date",
    }
)

ATTRIBUTE_RULES: dict[str, str] = {
    **dict.fromkeys(
        CODE_FROM_STRING_ATTRIBUTES, "code in strings is blocked; use boolean masks such as df[df['Close'] > 0]"
    ),
    **dict.fromkeys(FORMAT_ATTRIBUTES, "format strings can walk attributes; use an f-string such as f'SMA_{n}'"),
    **dict.fromkeys(FILE_IO_ATTRIBUTES, "file and network I/O is blocked; the harness supplies the data"),
    **dict.fromkeys(ESCAPE_ATTRIBUTES, "numpy and pandas internals reach the operating system"),
    **dict.fromkeys(DISPLAY_ATTRIBUTES, "plotting, styling and global options are blocked"),
    **dict.fromkeys(INTROSPECTION_ATTRIBUTES, "frame and class introspection is blocked"),
}
# pandas' string dispatch (df.apply("to_csv", ...), agg, transform) turns a string into a method call.
PANDAS_WRITERS = frozenset(
    {
        "to_clipboard",
        "to_csv",
        "to_excel",
        "to_feather",
        "to_gbq",
        "to_hdf",
        "to_html",
        "to_iceberg",
        "to_json",
        "to_latex",
        "to_markdown",
        "to_orc",
        "to_parquet",
        "to_pickle",
        "to_sql",
        "to_stata",
        "to_string",
        "to_xarray",
        "to_xml",
    }
)
DENIED_STRINGS = CODE_FROM_STRING_ATTRIBUTES | FORMAT_ATTRIBUTES | FILE_IO_ATTRIBUTES | PANDAS_WRITERS
DUNDER_IN_STRING = re.compile(r"__\w+__")

# ---------------------------------------------------------------------------------------------------------
# pandas string dispatch. These take a function or a function NAME and resolve a name with getattr on the
# object (pandas/core/apply.py `_apply_str`, GroupBy.apply and _transform), including non-callable
# attributes, so a name built at run time ("ev" + "al") reaches DataFrame.eval, whose `@name` resolves in
# pandas' own module globals (inspect, hence os). Types are unknown here, so the rule goes by method name on
# any object: every argument pandas may dispatch must be a function the vetter can see or a literal name
# below. Series.map, Index.map, DataFrame.map and pipe call what they get (a string is "not callable").
# ---------------------------------------------------------------------------------------------------------
# method -> the positional arguments that may be a function, as (first, end); end None means all the rest.
DISPATCH_POSITIONS: dict[str, tuple[int, int | None]] = {
    "agg": (0, 1),
    "aggregate": (0, 1),
    "apply": (0, 1),
    "transform": (0, 1),
    "filter": (0, 1),  # SeriesGroupBy.filter(name) calls getattr(group, name); a frame's filter takes items=
    "NamedAgg": (1, 2),  # NamedAgg(column, aggfunc, *args for aggfunc)
    # df.pivot_table(values, index, columns, aggfunc, ...); "all the rest" also covers the unbound
    # pd.DataFrame.pivot_table(df, ...), where aggfunc comes one later.
    "pivot_table": (3, None),
    "crosstab": (5, None),  # pd.crosstab(index, columns, values, rownames, colnames, aggfunc, ...)
}
# The same functions called through the module, where the data is the first argument.
PANDAS_FUNCTION_POSITIONS: dict[str, tuple[int, int | None]] = {"pivot_table": (4, None)}
DISPATCH_KEYWORDS = frozenset({"func", "arg", "aggfunc"})
# With no function given, these take named aggregations as keywords: out=("Close", "max") or out="max".
NAMED_AGGREGATION_METHODS = frozenset({"agg", "aggregate", "transform"})
NOT_NAMED_AGGREGATIONS = frozenset({"axis", "engine", "engine_kwargs"})
# Names pandas may be given as literal strings: reducers and transforms that take no function themselves.
DISPATCH_NAMES = frozenset(
    {
        "mean",
        "median",
        "sum",
        "prod",
        "std",
        "var",
        "sem",
        "min",
        "max",
        "count",
        "size",
        "nunique",
        "first",
        "last",
        "skew",
        "kurt",
        "kurtosis",
        "quantile",
        "idxmax",
        "idxmin",
        "all",
        "any",
        "ohlc",
        "describe",
        "cumsum",
        "cumprod",
        "cummax",
        "cummin",
        "cumcount",
        "rank",
        "pct_change",
        "diff",
        "shift",
        "ffill",
        "abs",
        "round",
    }
)
FUNCTION_HINT = "pass a function (def or lambda), a numpy function such as np.mean, or a literal name such as 'mean'"
DISPATCH_RULE = f"pandas looks a function given by name up on the object; {FUNCTION_HINT}"
UNPACKING_RULE = "pandas could take a function name from it; pass the arguments one by one"
DISPATCH_NAME_RULE = (
    "only reducer and transform names such as 'mean', 'std' or 'cumsum' may be given as strings; "
    "pass a function (def or lambda) for anything else"
)
# How a name is bound: a name given to pandas as a function must be bound only in FUNCTION_BINDINGS.
DEFINED, IMPORTED_FUNCTION, ASSIGNED = "def", "imported function", "assigned"
FUNCTION_BINDINGS = frozenset({DEFINED, IMPORTED_FUNCTION})

# ---------------------------------------------------------------------------------------------------------
# Builtins. Allowed: pure values and iteration. Everything else in builtins is rejected in every role
# (call, reference, parameter, assignment), so shadowing it in one function cannot unlock it in another.
# ---------------------------------------------------------------------------------------------------------
ALLOWED_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "ascii",
        "bin",
        "bool",
        "bytes",
        "callable",
        "chr",
        "complex",
        "dict",
        "divmod",
        "enumerate",
        "filter",
        "float",
        "format",
        "frozenset",
        "hasattr",
        "hash",
        "hex",
        "int",
        "isinstance",
        "issubclass",
        "iter",
        "len",
        "list",
        "map",
        "max",
        "min",
        "next",
        "oct",
        "ord",
        "pow",
        "print",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "slice",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
        "Ellipsis",
        "NotImplemented",
    }
)
EXCEPTION_NAMES = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException) and not name.startswith("_")
)
BUILTIN_RULES: dict[str, str] = {
    # Code from strings.
    **dict.fromkeys(("eval", "exec", "compile"), "running code from strings is blocked"),
    # Namespace and by-name attribute access: the classic route around attribute rules.
    **dict.fromkeys(
        ("getattr", "setattr", "delattr", "globals", "locals", "vars", "dir"),
        "access by computed name is blocked; use row['x'] or row.get('x', default)",
    ),
    # Class machinery: type(name, bases, ns) builds classes, object/super reach __subclasses__.
    **dict.fromkeys(
        ("type", "object", "super", "classmethod", "staticmethod", "property"),
        "class machinery is blocked; use isinstance() and plain functions",
    ),
    # Files, terminals, the debugger and the interpreter itself.
    **dict.fromkeys(
        ("open", "input", "breakpoint", "help", "exit", "quit", "copyright", "credits", "license", "memoryview"),
        "files, input and interpreter access are blocked; the harness supplies the data",
    ),
}
FORBIDDEN_BUILTINS = frozenset(BUILTIN_RULES) | frozenset(
    name
    for name in dir(builtins)
    if not name.startswith("_") and name not in ALLOWED_BUILTINS and name not in EXCEPTION_NAMES
)
# Modules that reach the operating system: never a name in the block, in any role.
ESCAPE_MODULE_NAMES = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "shutil",
        "socket",
        "builtins",
        "importlib",
        "pickle",
        "ctypes",
        "pathlib",
    }
)
# Other modules a model may reach for; when the block does not define the name, say what is available.
KNOWN_MODULE_NAMES = ESCAPE_MODULE_NAMES | frozenset(
    {
        "io",
        "requests",
        "urllib",
        "json",
        "time",
        "datetime",
        "random",
        "scipy",
        "sklearn",
        "talib",
    }
)

# Syntax that strategies never need, with what to do instead.
REJECTED_SYNTAX: dict[type, tuple[str, str]] = {
    ast.ClassDef: ("class definition", "classes bring metaclasses and descriptors; use functions and dicts"),
    ast.AsyncFunctionDef: ("async function", "strategies are plain synchronous functions"),
    ast.AsyncFor: ("async for", "strategies are plain synchronous functions"),
    ast.AsyncWith: ("async with", "strategies are plain synchronous functions"),
    ast.Await: ("await", "strategies are plain synchronous functions"),
    ast.Match: ("match statement", "use if/elif"),
}
# Leaves with nothing to check.
LEAF_TYPES = frozenset(
    cls
    for base in (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
    for cls in base.__subclasses__()
)
# Nodes checked only through their children.
PLAIN_NODES = frozenset(
    {
        ast.Return,
        ast.Delete,
        ast.Assign,
        ast.AugAssign,
        ast.For,
        ast.While,
        ast.If,
        ast.With,
        ast.Raise,
        ast.Try,
        ast.TryStar,
        ast.Assert,
        ast.Expr,
        ast.Pass,
        ast.Break,
        ast.Continue,
        ast.BoolOp,
        ast.NamedExpr,
        ast.BinOp,
        ast.UnaryOp,
        ast.Lambda,
        ast.IfExp,
        ast.Dict,
        ast.Set,
        ast.ListComp,
        ast.SetComp,
        ast.DictComp,
        ast.GeneratorExp,
        ast.Yield,
        ast.YieldFrom,
        ast.Compare,
        ast.FormattedValue,
        ast.JoinedStr,
        ast.Subscript,
        ast.Starred,
        ast.List,
        ast.Tuple,
        ast.Slice,
        ast.keyword,
        ast.withitem,
    }
)
# Nodes a top-level constant may contain (calls are checked separately).
CONSTANT_NODES = (
    frozenset(
        {
            ast.Constant,
            ast.Tuple,
            ast.List,
            ast.Set,
            ast.Dict,
            ast.UnaryOp,
            ast.BinOp,
            ast.BoolOp,
            ast.Compare,
            ast.IfExp,
            ast.Name,
            ast.Attribute,
            ast.Subscript,
            ast.Slice,
            ast.Starred,
            ast.keyword,
            ast.JoinedStr,
            ast.FormattedValue,
        }
    )
    | LEAF_TYPES
)
ATTRIBUTE_ASSIGNMENT_RULE = (
    "attribute assignment can patch pandas, numpy or the harness; set columns with df['x'] = ..."
)
TOP_LEVEL_RULE = (
    "the top level may hold only function definitions, constants and imports; "
    "move this code into generate_features or strategy_logic"
)
CONSTANT_KINDS = "literals, tuples, lists, dicts, arithmetic and calls of np, pd or math functions"
TOP_LEVEL_VALUE_RULE = f"top-level values must be constants: {CONSTANT_KINDS}; compute anything else inside a function"
# Defaults and annotations are evaluated by `def` and `lambda` themselves, before any harness call.
DEFAULT_RULE = (
    f"default values are evaluated when the function is defined, so they must be constants: {CONSTANT_KINDS}; "
    "compute anything else inside the function"
)
ANNOTATION_NODES = frozenset(
    {
        ast.Name,
        ast.Attribute,
        ast.Subscript,
        ast.Constant,
        ast.Tuple,
        ast.List,
        ast.BinOp,
        ast.BitOr,
        ast.Load,
    }
)
ANNOTATION_RULE = (
    "annotations are evaluated when the function is defined; use names, attributes, subscripts and | "
    "such as pd.Series, list[float] or int | None"
)
CONTROL_RULE = (
    "control, bidirectional-formatting and stray carriage-return characters can hide code or drive the "
    "terminal; write plain text, with escapes such as '\\x1b' inside strings"
)
DELIMITER_RULE = (
    "it marks where the agent block starts or ends in trade.py, so the block would be cut there when the "
    "file is read back; write another comment"
)


@dataclass(frozen=True)
class VettedBlock:
    """A block that passed vetting: its text, its syntax tree, and its top-level names."""

    source: str
    tree: ast.Module
    functions: tuple[str, ...]
    constants: tuple[str, ...]


def vet_block(block: str, require: Iterable[str] = REQUIRED_FUNCTIONS) -> VettedBlock:
    """Vet a candidate block; raise CandidateError (syntax) or UnsafeCodeError (rule, line) when it fails."""
    _check_characters(block)  # first: later messages quote the block's lines
    if len(block) > MAX_BLOCK_CHARS:
        line = block.count("\n", 0, MAX_BLOCK_CHARS) + 1
        _reject(
            line,
            f"a block of {len(block):,} characters",
            f"blocks are limited to {MAX_BLOCK_CHARS:,} characters; keep the strategy short",
        )
    _check_delimiter_lines(block)
    tree = _parse(block)
    vetter = _Vetter(block)
    vetter.vet_module(tree)
    _check_required(vetter, tuple(require))
    vetter.resolve_reads()  # after the signatures: `def generate_features():` explains better than "df undefined"
    vetter.resolve_function_names()
    try:  # the compiler finds what the parser does not: `break` outside a loop, bad nonlocal, ...
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(tree, "<strategy>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise _syntax_error(exc) from None
    return VettedBlock(block, tree, tuple(vetter.function_nodes), tuple(dict.fromkeys(vetter.constants)))


def _parse(block: str) -> ast.Module:
    """Parse quietly (no escape-sequence warnings); pathological nesting becomes a rejection."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(block, filename="<strategy>")
    except SyntaxError as exc:
        raise _syntax_error(exc) from None
    except ValueError as exc:  # a lone surrogate, which cannot be encoded
        raise CandidateError(f"line 1: SyntaxError: {exc}", status="syntax_error", error_type="SyntaxError") from None
    except (RecursionError, MemoryError):
        _reject(1, "nesting this deep", f"code is limited to {MAX_DEPTH} levels of nesting; use helper functions")


def _syntax_error(exc: SyntaxError) -> CandidateError:
    """The model-facing form of a SyntaxError (IndentationError and TabError keep their own names)."""
    name = type(exc).__name__
    return CandidateError(f"line {exc.lineno or 1}: {name}: {exc.msg}", status="syntax_error", error_type=name)


def _reject(line: int, what: str, rule: str) -> NoReturn:
    """Raise the one rejection format: `line N: <what> is not allowed (<rule>)`."""
    raise UnsafeCodeError(f"line {line}: {what} is not allowed ({rule})", line=line)


def _check_characters(block: str) -> None:
    """No control or bidi character (untrusted.UNSAFE_CHARACTERS; a CR ending a line is fine), named by code point."""
    for found in UNSAFE_CHARACTERS.finditer(block):
        if found.group() == "\r" and block.startswith("\n", found.end()):
            continue
        _reject(block.count("\n", 0, found.start()) + 1, f"the character U+{ord(found.group()):04X}", CONTROL_RULE)


def _check_delimiter_lines(block: str) -> None:
    """No line that trade.py's reader would take for a delimiter, however it is indented."""
    for number, text in enumerate(block.split("\n"), start=1):
        if is_delimiter_line(text):
            which = "start" if text.strip() == BLOCK_START else "end"
            _reject(number, f"the trade.py {which} delimiter line", DELIMITER_RULE)


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _snippet(node: ast.AST) -> str:
    """A node as shortened source, for a message (only nodes already vetted for depth)."""
    return _shorten(ast.unparse(node))


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _names_a_function(attr: str) -> bool:
    """True for np/pd/math names the block may give pandas as a function.

    The capitalised ones are pandas classes and constants: pd.DataFrame.agg(pd.DataFrame, name, ...) runs
    with the class as `self` and dispatches `name` on it, so a class is never a function here.
    """
    return not attr[:1].isupper()


def _module_path(node: ast.expr) -> str | None:
    """The module a plain chain refers to (`np` -> numpy, `np.linalg` -> numpy.linalg), else None."""
    if isinstance(node, ast.Name):
        return MODULE_ALIASES.get(node.id)
    if isinstance(node, ast.Attribute):
        parent = _module_path(node.value)
        if parent is not None and f"{parent}.{node.attr}" in MODULE_ATTRIBUTES:
            return f"{parent}.{node.attr}"
    return None


def _module_root(node: ast.expr) -> str | None:
    """The module alias at the root of a plain attribute chain (`np.linalg.norm` -> 'np'), else None."""
    while isinstance(node, ast.Attribute):
        node = node.value
    if isinstance(node, ast.Name) and node.id in MODULE_ALIASES:
        return node.id
    return None


def _attribute_rule(attr: str) -> str | None:
    """Why an attribute name is blocked on any object, or None when it is allowed."""
    if attr.startswith("_"):
        return "private attributes are blocked"
    rule = ATTRIBUTE_RULES.get(attr)
    if rule is not None:
        return rule
    if attr.startswith("read_"):
        return "file and network I/O is blocked; the harness supplies the data"
    if attr.startswith("to_") and attr not in CONVERSION_ATTRIBUTES:
        return "pandas writers are blocked; only in-memory conversions such as to_numpy, to_list, to_dict are available"
    if attr.startswith(INTROSPECTION_PREFIXES):
        return "frame and class introspection is blocked"
    return None


def _check_required(vetter: _Vetter, require: tuple[str, ...]) -> None:
    """The required functions exist at top level; each of the two entry points takes one argument."""
    for name in require:
        if name not in vetter.function_nodes:
            _reject(
                1,
                f"a block without {name}()",
                f"the block must define {SIGNATURES} at top level",
            )
    for name, param in FUNCTIONS.items():
        node = vetter.function_nodes.get(name)
        if node is None:
            continue
        args = node.args
        positional = len(args.posonlyargs) + len(args.args)
        required = positional - len(args.defaults)
        required_keywords = sum(default is None for default in args.kw_defaults)
        if positional == 0 or required != 1 or required_keywords:
            _reject(node.lineno, f"this signature of {name}()", f"it must take exactly one argument, {name}({param})")


class _Vetter:
    """One pass over the tree: checks every node, records names bound and names read."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.bindings: dict[str, set[str]] = {}  # name -> how it is bound (DEFINED, IMPORTED_FUNCTION, ASSIGNED)
        self.reads: list[tuple[str, int]] = []  # names to resolve once every binding has been seen
        self.function_names: list[tuple[str, int, str]] = []  # (name, line, method) given to pandas as functions
        self.callees: set[int] = set()  # ids of dispatch attributes that are called, not used as values
        self.imported: set[str] = set()  # names bound by `from module import name`
        self.function_nodes: dict[str, ast.FunctionDef] = {}
        self.constants: list[str] = []
        self.handlers: dict[type, Callable[[ast.AST, int, int], None]] = {
            ast.FunctionDef: self.visit_function,
            ast.arguments: self.visit_arguments,
            ast.arg: self.visit_arg,
            ast.AnnAssign: self.visit_ann_assign,
            ast.Name: self.visit_name,
            ast.Attribute: self.visit_attribute,
            ast.Call: self.visit_call,
            ast.Constant: self.visit_constant,
            ast.Import: self.visit_import,
            ast.ImportFrom: self.visit_import_from,
            ast.ExceptHandler: self.visit_except_handler,
            ast.Global: self.visit_global,
            ast.Nonlocal: self.visit_global,
            ast.comprehension: self.visit_comprehension,
        }

    # -- top level ------------------------------------------------------------------------------------
    def vet_module(self, tree: ast.Module) -> None:
        """Check the top-level statements and everything under them (names read are resolved afterwards)."""
        for stmt in tree.body:
            kind = type(stmt)
            if kind is ast.FunctionDef:
                self.function_nodes[stmt.name] = stmt
            elif kind in (ast.Assign, ast.AnnAssign):
                self.check_constant(stmt)
            elif kind is ast.Expr and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                continue  # a docstring or a string used as a comment
            elif kind not in (ast.Import, ast.ImportFrom, ast.Pass) and kind not in REJECTED_SYNTAX:
                _reject(stmt.lineno, f"top-level statement `{self.quote(stmt.lineno)}`", TOP_LEVEL_RULE)
            self.visit(stmt, stmt.lineno, 1)

    def quote(self, lineno: int) -> str:
        """One source line, shortened: quoting the text avoids unparsing a possibly very deep tree."""
        lines = re.split(r"\r\n|\r|\n", self.source)  # the parser's line endings, not str.splitlines'
        return _shorten(lines[lineno - 1].strip() if lineno <= len(lines) else "")

    def check_constant(self, stmt: ast.Assign | ast.AnnAssign) -> None:
        """A top-level assignment binds plain names to a value computed from literals and module functions."""
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names: list[str] = []
        for target in targets:
            elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
            for element in elements:
                if isinstance(element, ast.Attribute):
                    _reject(stmt.lineno, f"assigning to attribute '{element.attr}'", ATTRIBUTE_ASSIGNMENT_RULE)
                if not isinstance(element, ast.Name):
                    _reject(
                        stmt.lineno,
                        "a top-level assignment to anything but plain names",
                        "top-level assignments may only bind constant names",
                    )
                if element.id in REQUIRED_FUNCTIONS:
                    _reject(stmt.lineno, f"assigning to {element.id}", f"define it with `def {element.id}(...)`")
                names.append(element.id)
        if stmt.value is not None:
            self.check_constant_value(
                stmt.value, stmt.lineno, f"the top-level value of {', '.join(names)}", TOP_LEVEL_VALUE_RULE
            )
        self.constants.extend(names)

    def check_constant_value(self, value: ast.expr, line: int, what: str, rule: str) -> None:
        """A value computed before any harness call: literals, arithmetic and module function calls only."""
        for node in ast.walk(value):
            kind = type(node)
            if kind not in CONSTANT_NODES and not (kind is ast.Call and self.is_constant_call(node.func)):
                _reject(line, what, rule)

    def is_constant_call(self, func: ast.expr) -> bool:
        """Calls a top-level constant may make: module functions and pure builtins (never the block's own code)."""
        if isinstance(func, ast.Attribute):
            return _module_root(func) is not None
        return isinstance(func, ast.Name) and (
            (func.id in ALLOWED_BUILTINS and func.id != "print") or func.id in self.imported
        )

    def resolve_reads(self) -> None:
        """Every name read is bound somewhere in the block (or is np/pd/math or an allowed builtin)."""
        for name, line in self.reads:
            if name in self.bindings:
                continue
            if name in KNOWN_MODULE_NAMES:
                _reject(line, f"name '{name}'", IMPORT_HINT)
            if name in MODULE_ALIASES:
                _reject(
                    line,
                    f"name '{name}' without `import {MODULE_ALIASES[name]}`",
                    f"write {'np' if name == 'numpy' else 'pd'}, which is already imported",
                )
            raise UnsafeCodeError(
                f"line {line}: name '{name}' is not defined (only names defined in the block, np, pd, math "
                "and the common builtins are available)",
                line=line,
            )

    def resolve_function_names(self) -> None:
        """A name given to pandas as a function is bound only by def or by importing a module function."""
        for name, line, method in self.function_names:
            how = self.bindings.get(name)
            if (how is None and name in ALLOWED_BUILTINS) or (how and how <= FUNCTION_BINDINGS):
                continue
            rule = (
                DISPATCH_RULE
                if how is None
                else (
                    f"the name '{name}' is bound by something other than def in this block, so it may hold a name "
                    f"at run time; {FUNCTION_HINT}"
                )
            )
            _reject(line, f"`{name}` as the function of {method}()", rule)

    # -- dispatch -------------------------------------------------------------------------------------
    def visit(self, node: ast.AST, line: int, depth: int) -> None:
        """Check one node and, through its handler, its children."""
        if depth > MAX_DEPTH:
            _reject(
                line,
                f"nesting deeper than {MAX_DEPTH} levels",
                "split long expressions and deep blocks into helper functions",
            )
        line = getattr(node, "lineno", line)
        kind = type(node)
        handler = self.handlers.get(kind)
        if handler is not None:
            handler(node, line, depth)
        elif kind in PLAIN_NODES:
            self.visit_children(node, line, depth)
        elif kind in REJECTED_SYNTAX:
            what, rule = REJECTED_SYNTAX[kind]
            _reject(line, what, rule)
        else:
            _reject(line, f"'{kind.__name__}' syntax", "strategies use plain functions, expressions and loops")

    def visit_children(self, node: ast.AST, line: int, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            if type(child) not in LEAF_TYPES:
                self.visit(child, line, depth + 1)

    # -- names ----------------------------------------------------------------------------------------
    def check_name(self, name: str, line: int) -> None:
        """A name the block binds or reads: no dunders, no blocked builtins, no rebinding of modules."""
        if name.startswith("__"):
            _reject(line, f"name '{name}'", "dunder names are blocked")
        if name in FORBIDDEN_BUILTINS:
            _reject(line, f"name '{name}'", BUILTIN_RULES.get(name, "this builtin is not available to strategies"))
        if name in ESCAPE_MODULE_NAMES:
            _reject(line, f"name '{name}'", IMPORT_HINT)

    def bind(self, name: str, line: int, how: str = ASSIGNED) -> None:
        """A name the block defines; blocked builtins stay blocked even as local names (no shadowing holes)."""
        if name in FORBIDDEN_BUILTINS:
            _reject(line, f"the name '{name}'", "it is the name of a blocked builtin; choose another name")
        self.check_name(name, line)
        if name in MODULE_ALIASES:
            _reject(line, f"binding the name '{name}'", f"'{name}' is reserved for the {MODULE_ALIASES[name]} module")
        self.bindings.setdefault(name, set()).add(how)

    def visit_name(self, node: ast.Name, line: int, depth: int) -> None:
        name = node.id
        if not isinstance(node.ctx, ast.Load):
            self.bind(name, line)
            return
        self.check_name(name, line)
        if name in MODULE_ALIASES:
            _reject(
                line,
                f"using the module '{name}' as a value",
                f"modules may only be used through their functions, e.g. {name}.<function>(...)",
            )
        if name not in ALLOWED_BUILTINS and name not in EXCEPTION_NAMES:
            self.reads.append((name, line))

    def visit_arguments(self, node: ast.arguments, line: int, depth: int) -> None:
        positional = [*node.posonlyargs, *node.args]
        defaults = [
            *zip(positional[len(positional) - len(node.defaults) :], node.defaults, strict=True),
            *zip(node.kwonlyargs, node.kw_defaults, strict=True),
        ]
        for arg, default in defaults:
            if default is not None:  # a keyword-only argument without a default
                self.check_constant_value(default, default.lineno, f"the default value of {arg.arg}", DEFAULT_RULE)
        self.visit_children(node, line, depth)

    def visit_arg(self, node: ast.arg, line: int, depth: int) -> None:
        self.bind(node.arg, line)
        if node.annotation is not None:
            self.visit_annotation(node.annotation, line, depth + 1)

    def visit_ann_assign(self, node: ast.AnnAssign, line: int, depth: int) -> None:
        # Inside a function the annotation is not evaluated, at the top level it is; one rule for both.
        self.check_annotation(node.annotation)
        self.visit_children(node, line, depth)

    def visit_annotation(self, node: ast.expr, line: int, depth: int) -> None:
        self.check_annotation(node)
        self.visit(node, line, depth)

    def check_annotation(self, annotation: ast.expr) -> None:
        for node in ast.walk(annotation):
            if type(node) not in ANNOTATION_NODES or isinstance(node, ast.BinOp) and not isinstance(node.op, ast.BitOr):
                _reject(annotation.lineno, f"the annotation `{_snippet(annotation)}`", ANNOTATION_RULE)

    def visit_global(self, node: ast.Global | ast.Nonlocal, line: int, depth: int) -> None:
        # Allowed: stateful strategies (a position flag, a trailing stop) keep state in module globals;
        # smuggling future rows that way is the look-ahead gate's job.
        for name in node.names:
            self.check_name(name, line)
            if name in MODULE_ALIASES:
                _reject(
                    line, f"declaring '{name}' global", f"'{name}' is reserved for the {MODULE_ALIASES[name]} module"
                )

    def visit_function(self, node: ast.FunctionDef, line: int, depth: int) -> None:
        if node.decorator_list:
            _reject(
                node.decorator_list[0].lineno,
                f"decorator on {node.name}()",
                "decorators run code at definition time and can swap the function; call helpers explicitly",
            )
        self.bind(node.name, line, DEFINED)
        self.visit(node.args, line, depth + 1)
        if node.returns is not None:
            self.visit_annotation(node.returns, line, depth + 1)
        body = node.body
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            body = body[1:]  # the docstring is prose; it may mention __init__ without meaning it
        for stmt in body:
            self.visit(stmt, line, depth + 1)

    def visit_except_handler(self, node: ast.ExceptHandler, line: int, depth: int) -> None:
        if node.name is not None:
            self.bind(node.name, line)
        self.visit_children(node, line, depth)

    def visit_comprehension(self, node: ast.comprehension, line: int, depth: int) -> None:
        if node.is_async:
            _reject(line, "async comprehension", "strategies are plain synchronous functions")
        self.visit_children(node, line, depth)

    # -- imports --------------------------------------------------------------------------------------
    def visit_import(self, node: ast.Import, line: int, depth: int) -> None:
        # Tolerated because local models write them anyway; they bind nothing new.
        for alias in node.names:
            allowed = ALLOWED_IMPORTS.get(alias.name)
            if allowed is None:
                _reject(line, f"import of '{alias.name}'", IMPORT_HINT)
            bound = alias.asname or alias.name
            if bound not in allowed:
                _reject(
                    line,
                    f"import of {alias.name} as '{bound}'",
                    f"write `import {alias.name} as {min(allowed, key=len)}`; {IMPORT_HINT}",
                )
            self.bindings.setdefault(bound, set()).add(ASSIGNED)

    def visit_import_from(self, node: ast.ImportFrom, line: int, depth: int) -> None:
        module = node.module or ""
        if node.level or module not in ALLOWED_IMPORTS:
            _reject(line, f"import from '{'.' * node.level}{module}'", IMPORT_HINT)
        for alias in node.names:
            name = alias.name
            if name == "*":
                _reject(line, f"`from {module} import *`", "import names one by one")
            if f"{module}.{name}" in MODULE_ATTRIBUTES:
                _reject(line, f"import of the module '{name}' from {module}", "use it through the module's name")
            if name not in MODULE_ATTRIBUTES[module]:
                _reject(line, f"import of '{name}' from {module}", self.module_rule(module, name))
            if name in DISPATCH_POSITIONS:
                _reject(
                    line,
                    f"import of '{name}' from {module}",
                    f"call it as pd.{name}(...), so that the functions given to it can be checked",
                )
            bound = alias.asname or name
            self.bind(bound, line, IMPORTED_FUNCTION if _names_a_function(name) else ASSIGNED)
            self.imported.add(bound)

    # -- attributes -----------------------------------------------------------------------------------
    def module_of(self, node: ast.expr, line: int) -> str | None:
        """The module a plain chain refers to (see _module_path), noting that `numpy`/`pandas` need an import."""
        module = _module_path(node)
        root = _module_root(node)
        if module is not None and root not in PROVIDED_NAMES:
            self.reads.append((root, line))
        return module

    def module_rule(self, module: str, attr: str) -> str:
        """Why an attribute of a module is rejected."""
        hint = MODULE_HINTS.get((module, attr))
        if hint is not None:
            return hint
        rule = _attribute_rule(attr)
        if rule is not None:
            return rule
        return f"only listed {module} functions are available, such as {MODULE_EXAMPLES[module]}"

    def visit_attribute(self, node: ast.Attribute, line: int, depth: int) -> None:
        attr = node.attr
        if attr in DISPATCH_POSITIONS and id(node) not in self.callees:
            # A stored or passed method (run = df.agg; df.pipe(pd.DataFrame.agg, ...)) hides its arguments.
            _reject(
                line,
                f"attribute '{attr}' used as a value",
                "methods that take function names must be called directly, as in df.agg('mean'), so that "
                "the functions given to them can be checked",
            )
        if not isinstance(node.ctx, ast.Load):
            _reject(line, f"assigning to attribute '{attr}'", ATTRIBUTE_ASSIGNMENT_RULE)
        module = self.module_of(node.value, line)
        if module is None:
            self.visit(node.value, line, depth + 1)  # inner links first: `pd.io.common.os` fails at `io`
            rule = _attribute_rule(attr)
            if rule is not None:
                _reject(line, f"attribute '{attr}'", rule)
            return
        if attr.startswith("_") or attr not in MODULE_ATTRIBUTES[module]:
            _reject(line, f"attribute '{attr}' of {module}", self.module_rule(module, attr))
        if f"{module}.{attr}" in MODULE_ATTRIBUTES:
            _reject(
                line,
                f"using the module '{module}.{attr}' as a value",
                "modules may only be used through their functions",
            )

    # -- calls and literals ---------------------------------------------------------------------------
    def visit_call(self, node: ast.Call, line: int, depth: int) -> None:
        func = node.func
        dispatch = func if isinstance(func, ast.Attribute) and func.attr in DISPATCH_POSITIONS else None
        if dispatch is not None:
            self.callees.add(id(dispatch))
        self.visit_children(node, line, depth)  # first, so literal strings keep their own, sharper messages
        if dispatch is not None:
            self.check_dispatch(node, dispatch)

    def check_dispatch(self, node: ast.Call, func: ast.Attribute) -> None:
        """Every argument pandas may resolve as a function name is a function the vetter can see."""
        method = func.attr
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                _reject(arg.lineno, f"unpacking `{_snippet(arg)}` into {method}()", UNPACKING_RULE)
        for keyword in node.keywords:
            if keyword.arg is None:
                _reject(
                    keyword.value.lineno, f"unpacking `**{_snippet(keyword.value)}` into {method}()", UNPACKING_RULE
                )
        first, end = DISPATCH_POSITIONS[method]
        if _module_path(func.value) == "pandas":
            first, end = PANDAS_FUNCTION_POSITIONS.get(method, (first, end))
        functions = [*node.args[first:end], *(kw.value for kw in node.keywords if kw.arg in DISPATCH_KEYWORDS)]
        for function in functions:
            self.check_function(function, method)
        if method in NAMED_AGGREGATION_METHODS and all(_is_none(function) for function in functions):
            for keyword in node.keywords:
                if keyword.arg not in NOT_NAMED_AGGREGATIONS | DISPATCH_KEYWORDS:
                    self.check_named_aggregation(keyword.value, method)

    def check_named_aggregation(self, value: ast.expr, method: str) -> None:
        """out=("Close", function) takes a column and a function; out=function a function."""
        if isinstance(value, ast.Tuple) and len(value.elts) == 2 and not isinstance(value.elts[1], ast.Starred):
            self.check_function(value.elts[1], method)
        else:
            self.check_function(value, method)

    def check_function(self, node: ast.expr, method: str) -> None:
        """A function pandas may get by name: lists, tuples and dict values of such functions all dispatch."""
        line = node.lineno
        if isinstance(node, (ast.List, ast.Tuple)):
            for element in node.elts:
                self.check_function(element, method)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    _reject(line, f"unpacking `**{_snippet(value)}` into {method}()", UNPACKING_RULE)
                self.check_function(value, method)
        elif isinstance(node, ast.Starred):
            _reject(line, f"unpacking `{_snippet(node)}` into {method}()", UNPACKING_RULE)
        elif isinstance(node, ast.Name):
            self.function_names.append((node.id, line, method))  # its bindings are known only at the end
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and node.value not in DISPATCH_NAMES:
                _reject(line, f"`{node.value!r}` as the function of {method}()", DISPATCH_NAME_RULE)
        elif not (
            isinstance(node, ast.Lambda)
            # a NamedAgg is checked as a dispatch call of its own
            or (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "NamedAgg")
            or (
                isinstance(node, ast.Attribute)
                and _module_path(node.value) is not None
                and _names_a_function(node.attr)
            )
        ):
            _reject(line, f"`{_snippet(node)}` as the function of {method}()", DISPATCH_RULE)

    def visit_constant(self, node: ast.Constant, line: int, depth: int) -> None:
        value = node.value
        if not isinstance(value, str):
            return
        if DUNDER_IN_STRING.search(value):
            _reject(
                line,
                f"the string {value[:40]!r}",
                "strings naming dunder attributes are blocked; they reach attributes through formatting",
            )
        if value in DENIED_STRINGS or value.startswith("read_"):
            _reject(line, f"the string {value!r}", "it names a blocked method that pandas would call by name")
