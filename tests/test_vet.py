"""AST vetting: attacks are rejected with the rule and the line; legitimate strategies pass and still run."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import os
import statistics
import textwrap
import time
import types

import numpy as np
import pandas as pd
import pytest

from autotrade.candidate import baseline_source, extract_block
from autotrade.contract import BLOCK_END, BLOCK_START
from autotrade.errors import CandidateError, UnsafeCodeError
from autotrade.sandbox import vet
from autotrade.sandbox.vet import VettedBlock, vet_block


def in_features(*lines: str) -> str:
    """A complete block whose generate_features body starts with `lines` (the first one is block line 2)."""
    body = "\n".join(f"    {line}" for line in lines)
    return f"def generate_features(df):\n{body}\n    return df\n\n\ndef strategy_logic(row):\n    return 0\n"


def block(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# (id, block, expected line, expected message start after "line N: ")
ATTACKS = [
    (
        "import_os",
        "import os\n" + in_features("pass"),
        1,
        "import of 'os' is not allowed (only numpy as np, pandas as pd and math are available; "
        "they are already imported)",
    ),
    (
        "import_subprocess_inside_function",
        in_features("import subprocess"),
        2,
        "import of 'subprocess' is not allowed (only numpy as np",
    ),
    (
        "from_builtins_import_open",
        "from builtins import open as reader\n" + in_features("pass"),
        1,
        "import from 'builtins' is not allowed (only numpy as np",
    ),
    (
        "from_numpy_import_lib",
        "from numpy import lib\n" + in_features("pass"),
        1,
        "import of 'lib' from numpy is not allowed (numpy and pandas internals reach the operating system)",
    ),
    (
        "dunder_import",
        in_features("__import__('os').system('id')"),
        2,
        "name '__import__' is not allowed (dunder names are blocked)",
    ),
    (
        "os_without_import",
        in_features("os.system('id')"),
        2,
        "name 'os' is not allowed (only numpy as np, pandas as pd and math are available",
    ),
    (
        "pandas_io_common_os",
        in_features("pd.io.common.os.system('touch /tmp/pwned')"),
        2,
        "attribute 'io' of pandas is not allowed (numpy and pandas internals reach the operating system)",
    ),
    (
        "numpy_lib_open_memmap",
        in_features("np.lib.format.open_memmap('/tmp/x', mode='w+', shape=(1,))"),
        2,
        "attribute 'lib' of numpy is not allowed (numpy and pandas internals reach the operating system)",
    ),
    (
        "numpy_ctypeslib",
        in_features("np.ctypeslib.load_library('libc', '/lib')"),
        2,
        "attribute 'ctypeslib' of numpy is not allowed (numpy and pandas internals reach the operating system)",
    ),
    (
        "ndarray_ctypes_pointer",
        in_features("ptr = df['Close'].values.ctypes.data"),
        2,
        "attribute 'ctypes' is not allowed (numpy and pandas internals reach the operating system)",
    ),
    (
        "pandas_read_pickle",
        in_features("df = pd.read_pickle('/tmp/payload.pkl')"),
        2,
        "attribute 'read_pickle' of pandas is not allowed (file and network I/O is blocked",
    ),
    (
        "pandas_read_csv_url",
        in_features("extra = pd.read_csv('http://127.0.0.1:8000/leak.csv')"),
        2,
        "attribute 'read_csv' of pandas is not allowed (file and network I/O is blocked",
    ),
    (
        "frame_to_csv",
        in_features("df.to_csv('/tmp/x.csv')"),
        2,
        "attribute 'to_csv' is not allowed (pandas writers are blocked; only in-memory conversions",
    ),
    (
        "frame_to_pickle",
        in_features("df['Close'].to_pickle('/tmp/best_trade.pkl')"),
        2,
        "attribute 'to_pickle' is not allowed (pandas writers are blocked",
    ),
    (
        "frame_to_string_buffer",
        in_features("df.to_string(buf='/tmp/learnings.md')"),
        2,
        "attribute 'to_string' is not allowed (pandas writers are blocked",
    ),
    (
        "numpy_save",
        in_features("np.save('/tmp/x.npy', df.values)"),
        2,
        "attribute 'save' of numpy is not allowed (file and network I/O is blocked",
    ),
    (
        "numpy_load_pickle",
        in_features("obj = np.load('/tmp/x.npy', allow_pickle=True)"),
        2,
        "attribute 'load' of numpy is not allowed (file and network I/O is blocked",
    ),
    (
        "numpy_fromfile",
        in_features("raw = np.fromfile('/etc/passwd', dtype=np.uint8)"),
        2,
        "attribute 'fromfile' of numpy is not allowed (file and network I/O is blocked",
    ),
    (
        "numpy_memmap",
        in_features("m = np.memmap('/tmp/x', mode='w+', shape=(4,))"),
        2,
        "attribute 'memmap' of numpy is not allowed (file and network I/O is blocked",
    ),
    (
        "numpy_datasource",
        in_features("np.DataSource('/tmp').open('http://127.0.0.1/x')"),
        2,
        "attribute 'DataSource' of numpy is not allowed (file and network I/O is blocked",
    ),
    (
        "array_tofile",
        in_features("df['Close'].to_numpy().tofile('/tmp/x')"),
        2,
        "attribute 'tofile' is not allowed (file and network I/O is blocked",
    ),
    (
        "pandas_eval",
        in_features("total = pd.eval('df.Close.sum()')"),
        2,
        "attribute 'eval' of pandas is not allowed (code in strings is blocked",
    ),
    (
        "frame_query_engine",
        in_features("df = df.query('Close > 0', engine='python')"),
        2,
        "attribute 'query' is not allowed (code in strings is blocked",
    ),
    (
        "format_dunder_walk",
        in_features("leak = '{0.__class__}'.format(df)"),
        2,
        "the string '{0.__class__}' is not allowed (strings naming dunder attributes are blocked",
    ),
    (
        "format_attribute_walk",
        in_features("leak = '{0.real}'.format(1)"),
        2,
        "attribute 'format' is not allowed (format strings can walk attributes; use an f-string",
    ),
    (
        "format_map",
        in_features("leak = '{x}'.format_map({'x': 1})"),
        2,
        "attribute 'format_map' is not allowed (format strings can walk attributes; use an f-string",
    ),
    (
        "string_dispatch_to_writer",
        in_features("df.apply('to_pickle', args=('/tmp/x',))"),
        2,
        "the string 'to_pickle' is not allowed (it names a blocked method that pandas would call by name)",
    ),
    (
        "getattr_built_up_string",
        in_features("getattr(df, 'to_' + 'csv')('/tmp/x')"),
        2,
        "name 'getattr' is not allowed (access by computed name is blocked",
    ),
    ("vars_call", in_features("ns = vars(df)"), 2, "name 'vars' is not allowed (access by computed name is blocked"),
    (
        "globals_call",
        in_features("ns = globals()"),
        2,
        "name 'globals' is not allowed (access by computed name is blocked",
    ),
    (
        "private_attribute",
        in_features("data = df._data"),
        2,
        "attribute '_data' is not allowed (private attributes are blocked)",
    ),
    (
        "generator_frame_walk",
        in_features("g = (x for x in [1])", "f = g.gi_frame.f_back.f_globals"),
        3,
        "attribute 'gi_frame' is not allowed (frame and class introspection is blocked)",
    ),
    (
        "traceback_frame_walk",
        in_features("tb = None", "harness = tb.tb_frame"),
        3,
        "attribute 'tb_frame' is not allowed (frame and class introspection is blocked)",
    ),
    (
        "frame_back_walk",
        in_features("frame = None", "caller = frame.f_back"),
        3,
        "attribute 'f_back' is not allowed (frame and class introspection is blocked)",
    ),
    (
        "exception_traceback",
        in_features("try:", "    1 / 0", "except ZeroDivisionError as e:", "    frame = e.__traceback__"),
        5,
        "attribute '__traceback__' is not allowed (private attributes are blocked)",
    ),
    (
        "decorator_smuggling",
        block("""
        def generate_features(df):
            return df


        @pd.Series
        def strategy_logic(row):
            return 0
        """),
        5,
        "decorator on strategy_logic() is not allowed (decorators run code at definition time",
    ),
    (
        "default_argument_open",
        block("""
        def generate_features(df):
            return df


        def strategy_logic(row, reader=open):
            return 0
        """),
        5,
        "name 'open' is not allowed (files, input and interpreter access are blocked",
    ),
    (
        "lambda_returning_open",
        in_features("reader = lambda: open"),
        2,
        "name 'open' is not allowed (files, input and interpreter access are blocked",
    ),
    (
        "type_builds_class",
        in_features("Evil = type('Evil', (), {})"),
        2,
        "name 'type' is not allowed (class machinery is blocked",
    ),
    (
        "type_mro_walk",
        in_features("base = type(df).mro()[-1]"),
        2,
        "name 'type' is not allowed (class machinery is blocked",
    ),
    (
        "mro_walk",
        in_features("base = pd.Series.mro()[-1]"),
        2,
        "attribute 'mro' is not allowed (frame and class introspection is blocked)",
    ),
    (
        "class_with_metaclass",
        "class Meta(type):\n    pass\n" + in_features("pass"),
        1,
        "class definition is not allowed (classes bring metaclasses and descriptors",
    ),
    (
        "async_def",
        "async def generate_features(df):\n    return df\n",
        1,
        "async function is not allowed (strategies are plain synchronous functions)",
    ),
    (
        "top_level_print",
        "print('x')\n" + in_features("pass"),
        1,
        "top-level statement `print('x')` is not allowed (the top level may hold only function definitions",
    ),
    (
        "top_level_for_loop",
        "for i in range(3):\n    pass\n" + in_features("pass"),
        1,
        "top-level statement `for i in range(3):` is not allowed (the top level may hold only function definitions",
    ),
    (
        "top_level_call_of_block_code",
        "def helper():\n    return 1\nX = helper()\n" + in_features("pass"),
        3,
        "the top-level value of X is not allowed (top-level values must be constants",
    ),
    (
        "module_alias_top_level",
        "m = np\n" + in_features("pass"),
        1,
        "using the module 'np' as a value is not allowed (modules may only be used through their functions",
    ),
    (
        "module_alias_in_container",
        in_features("m = [np][0]", "m.lib"),
        2,
        "using the module 'np' as a value is not allowed",
    ),
    (
        "submodule_as_value",
        in_features("la = np.linalg"),
        2,
        "using the module 'numpy.linalg' as a value is not allowed",
    ),
    (
        "rebind_module_name",
        in_features("np = df"),
        2,
        "binding the name 'np' is not allowed ('np' is reserved for the numpy module)",
    ),
    (
        "patch_series_std",
        in_features("pd.Series.std = lambda self, *a, **k: 1e-9"),
        2,
        "assigning to attribute 'std' is not allowed (attribute assignment can patch pandas",
    ),
    (
        "patch_series_std_top_level",
        "pd.Series.std = None\n" + in_features("pass"),
        1,
        "assigning to attribute 'std' is not allowed (attribute assignment can patch pandas",
    ),
    (
        "compile_call",
        in_features("code = compile('1', 'x', 'eval')"),
        2,
        "name 'compile' is not allowed (running code from strings is blocked)",
    ),
    (
        "exec_call",
        in_features("exec('import os')"),
        2,
        "name 'exec' is not allowed (running code from strings is blocked)",
    ),
    (
        "breakpoint_call",
        in_features("breakpoint()"),
        2,
        "name 'breakpoint' is not allowed (files, input and interpreter access are blocked",
    ),
    (
        "shadowed_builtin_elsewhere",
        in_features("open = None"),
        2,
        "the name 'open' is not allowed (it is the name of a blocked builtin; choose another name)",
    ),
    (
        "plot_accessor",
        in_features("df.plot()"),
        2,
        "attribute 'plot' is not allowed (plotting, styling and global options are blocked)",
    ),
    (
        "pandas_set_option",
        in_features("pd.set_option('display.max_rows', 1)"),
        2,
        "attribute 'set_option' of pandas is not allowed (plotting, styling and global options are blocked)",
    ),
    (
        "numpy_test_runner",
        in_features("np.test()"),
        2,
        "attribute 'test' of numpy is not allowed (only listed numpy functions are available",
    ),
]

# Look-ahead idioms: vetting leaves them to the look-ahead gate, which judges what the code does (a negative
# shift lagged back afterwards is causal); tests/test_lookahead.py shows the gate catching each one.
LOOKAHEAD_IDIOMS = {
    "negative_shift": "df['next'] = df['Close'].shift(-1)",
    "negative_shift_keyword": "df['next'] = df['Close'].shift(periods=-5)",
    "negative_pct_change": "df['fwd'] = df['Close'].pct_change(-1)",
    "centred_window": "df['m'] = df['Close'].rolling(5, center=True).mean()",
    "centred_window_lagged_back": "df['m'] = df['Close'].rolling(5, center=True).mean().shift(2)",
    "backward_fill": "df['x'] = df['Close'].rolling(5).mean().bfill()",
    "backfill": "df['x'] = df['Close'].backfill()",
    "interpolate": "df['x'] = df['Close'].interpolate()",
}


@pytest.mark.parametrize(("source", "line", "message"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_is_rejected_with_rule_and_line(source: str, line: int, message: str) -> None:
    with pytest.raises(UnsafeCodeError) as caught:
        vet_block(source)
    assert str(caught.value).startswith(f"line {line}: {message}")
    assert caught.value.line == line


@pytest.mark.parametrize("name", sorted(LOOKAHEAD_IDIOMS))
def test_lookahead_idioms_are_left_to_the_gate(name: str) -> None:
    assert vet_block(in_features(LOOKAHEAD_IDIOMS[name])).functions == ("generate_features", "strategy_logic")


def test_seeded_random_numbers_and_calendar_offsets_are_available() -> None:
    source = in_features(
        "rng = np.random.default_rng(7)",
        "df['noise'] = rng.normal(0, 1, len(df))",
        "df['month_end'] = (df.index + pd.offsets.MonthEnd(0)) == df.index",
    )
    assert vet_block(source).functions == ("generate_features", "strategy_logic")


def test_random_generator_internals_stay_out_of_reach() -> None:
    with pytest.raises(UnsafeCodeError, match="attribute 'cffi' is not allowed"):
        vet_block(in_features("x = np.random.default_rng(1).bit_generator.cffi"))


BASELINE = extract_block(baseline_source())

BENIGN = {
    "baseline_sma_crossover": BASELINE,
    "rsi": block("""
        def generate_features(df):
            delta = df["Close"].diff()
            gain = delta.clip(lower=0).rolling(14).mean()
            loss = (-delta.clip(upper=0)).rolling(14).mean()
            rs = gain / loss.replace(0, np.nan)
            df["RSI"] = 100 - 100 / (1 + rs)
            return df


        def strategy_logic(row):
            if pd.isna(row["RSI"]):
                return 0
            if row["RSI"] < 30:
                return 1
            if row["RSI"] > 70:
                return -1
            return 0
        """),
    "bollinger_bands": block("""
        def generate_features(df):
            mid = df["Close"].rolling(window=20).mean()
            std = df["Close"].rolling(window=20).std()
            df["BB_upper"] = mid + 2 * std
            df["BB_lower"] = mid - 2 * std
            df["BB_pct"] = (df["Close"] - df["BB_lower"]) / (df["BB_upper"] - df["BB_lower"])
            return df


        def strategy_logic(row):
            if row["Close"] < row["BB_lower"]:
                return 1
            if row["Close"] > row["BB_upper"]:
                return -1
            return 0
        """),
    "macd_ewm": block("""
        def generate_features(df):
            fast = df["Close"].ewm(span=12, adjust=False).mean()
            slow = df["Close"].ewm(span=26, adjust=False).mean()
            df["MACD"] = fast - slow
            df["MACD_signal"] = df["MACD"].ewm(span=9, adjust=False).mean()
            df["MACD_hist"] = df["MACD"] - df["MACD_signal"]
            return df


        def strategy_logic(row):
            return 1 if row.MACD_hist > 0 else -1
        """),
    "breakout_previous_high": block("""
        LOOKBACK = 55


        def generate_features(df):
            df["prior_high"] = df["High"].rolling(LOOKBACK).max().shift(1)
            df["prior_low"] = df["Low"].rolling(LOOKBACK // 2).min().shift(1)
            return df


        def strategy_logic(row):
            if row["Close"] > row["prior_high"]:
                return 1
            if row["Close"] < row["prior_low"]:
                return -1
            return 0
        """),
    "volatility_filter": block("""
        def generate_features(df):
            returns = df["Close"].pct_change()
            df["vol_20"] = returns.rolling(20).std() * math.sqrt(252)
            df["vol_rank"] = df["vol_20"].rolling(250, min_periods=60).rank(pct=True)
            df["trend"] = np.sign(df["Close"] - df["Close"].rolling(100).mean()).fillna(0)
            return df


        def strategy_logic(row):
            calm = row.get("vol_rank", 1.0) < 0.8
            if calm and row["trend"] > 0:
                return 1
            return -1
        """),
    "helpers_and_constants": block('''
        """Dual momentum with a drawdown guard."""
        FAST: int = 10
        SLOW = FAST * 5
        BANDS = (0.02, -0.05)
        PARAMS = {"span": 20, "floor": -0.1}
        ANNUAL = math.sqrt(252)
        START = pd.Timestamp("2000-01-03")


        def _momentum(series, n):
            """Fractional change over n bars."""
            return series / series.shift(n) - 1


        def _drawdown(series, n=SLOW):
            peak = series.rolling(n, min_periods=1).max()
            return series / peak - 1


        def generate_features(df):
            df["mom_fast"] = _momentum(df["Close"], FAST)
            df["mom_slow"] = _momentum(df["Close"], SLOW)
            df["dd"] = _drawdown(df["Close"])
            return df


        def strategy_logic(row):
            if row["dd"] < BANDS[1]:
                return -1
            if row["mom_fast"] > BANDS[0] and row["mom_slow"] > 0:
                return 1
            return 0
        '''),
    "comprehension_and_fstring_columns": block("""
        WINDOWS = [5, 10, 20]


        def generate_features(df):
            for n in WINDOWS:
                df[f"SMA_{n}"] = df["Close"].rolling(n).mean()
            above = [df["Close"] > df[f"SMA_{n}"] for n in WINDOWS]
            df["score"] = sum(a.astype(float) for a in above)
            lookup = {n: df[f"SMA_{n}"].iloc[0] for n in WINDOWS}
            df["first_sma_5"] = lookup[5]
            return df


        def strategy_logic(row):
            votes = [row[f"SMA_{n}"] < row["Close"] for n in WINDOWS]
            return 1 if all(votes) else (-1 if not any(votes) else 0)
        """),
    "lambda_apply_and_select": block("""
        def generate_features(df):
            df["range"] = df.apply(lambda r: r["High"] - r["Low"], axis=1)
            df["slope"] = df["Close"].rolling(10).apply(
                lambda w: np.polyfit(np.arange(len(w)), w, 1)[0], raw=True)
            df = df.assign(avg_range=lambda d: d["range"].rolling(14).mean())
            conditions = [df["slope"] > 0, df["slope"] < 0]
            df["direction"] = np.select(conditions, [1, -1], default=0)
            df.loc[:, "wide"] = (df["range"] > df["avg_range"]).astype(int)
            df.loc[df["wide"] == 1, "direction"] = 0
            return df


        def strategy_logic(row):
            key = sorted(["direction", "wide"])[0]
            return int(row[key])
        """),
    "import_numpy_tolerated": block("""
        import numpy as np
        import pandas as pd
        import math
        import numpy


        def generate_features(df):
            log_ret = np.log(df["Close"]).diff()
            df["z"] = (log_ret - log_ret.rolling(20).mean()) / log_ret.rolling(20).std()
            df["z"] = numpy.clip(df["z"].to_numpy(), -3, 3)
            return df


        def strategy_logic(row):
            z = row["z"]
            if isinstance(z, float) and math.isnan(z):
                return 0
            return 1 if z < -1 else (-1 if z > 1 else 0)
        """),
    "from_math_import_sqrt_tolerated": block("""
        from math import sqrt, log as ln
        SCALE = sqrt(252)


        def generate_features(df):
            df["vol"] = df["Close"].pct_change().rolling(21).std() * SCALE
            df["log_close"] = df["Close"].apply(ln)
            return df


        def strategy_logic(row):
            return 1 if row["vol"] < 0.2 else -1
        """),
    "stateful_with_global_and_try": block("""
        in_position = False
        entry_price = 0.0


        def generate_features(df):
            df["ATR"] = (df["High"] - df["Low"]).rolling(14).mean()
            df["SMA_50"] = df["Close"].rolling(50).mean().ffill()
            return df


        def strategy_logic(row):
            global in_position, entry_price
            try:
                atr = float(row["ATR"])
            except (KeyError, TypeError, ValueError):
                return 0
            if not in_position and row["Close"] > row["SMA_50"]:
                in_position, entry_price = True, row["Close"]
                return 1
            if in_position and row["Close"] < entry_price - 2 * atr:
                in_position = False
                return -1
            return 0
        """),
    "numpy_arrays_and_errstate": block("""
        def generate_features(df):
            close = df["Close"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(close > 0, np.log(close), np.nan)
            df["log_close"] = ratio
            df["ret_5"] = df["Close"].pct_change(5)
            df["max_20"] = df["Close"].rolling(20).max()
            df["ok"] = np.isfinite(df["log_close"].values) & (df["Volume"].fillna(0) > 0)
            del df["max_20"]
            if (n := len(df)) > 0:
                df["n"] = n
            return df


        def strategy_logic(row):
            if not row["ok"] or "ret_5" not in row or pd.isna(row["ret_5"]):
                return 0
            return max(-1, min(1, round(row["ret_5"] * 100)))
        """),
    "dispatch_with_functions_and_literal_names": block("""
        def _spread(frame):
            return frame["High"] - frame["Low"]


        def generate_features(df):
            def last_vs_mean(x):
                return x[-1] - x.mean()

            close = df["Close"]
            df["mean_10"] = close.rolling(10).apply(lambda x: x.mean(), raw=True)
            df["mean_5"] = close.rolling(5).agg("mean")
            df["dev_20"] = close.rolling(20).apply(last_vs_mean, raw=True)
            df["year_mean"] = close.groupby(df.index.year).transform("mean")
            df["log_close"] = close.apply(np.log)
            df["whole"] = close.apply(round)
            df["mid"] = df[["High", "Low"]].apply(np.mean, axis=1)
            df["spread_max"] = df.pipe(_spread).expanding().agg("max")
            stats = close.pct_change().expanding(20).agg(["mean", "std"])
            df["sharpe"] = stats["mean"] / stats["std"]
            levels = df[["High", "Low"]].rolling(20).agg({"High": "max", "Low": ["min", lambda w: w.quantile(0.1)]})
            df["low_10pct"] = levels[("Low", "<lambda>")]
            months = df.index.to_period("M")
            monthly = df.groupby(months).agg(
                hi=("High", "max"), lo=("Low", np.min), n=pd.NamedAgg(column="Close", aggfunc="count"))
            df["month_range"] = (monthly["hi"] - monthly["lo"]).reindex(months).to_numpy()
            yearly = pd.pivot_table(df, values="Close", index=df.index.year, aggfunc={"Close": ["mean", "max"]})
            df["year_max"] = yearly["max"].reindex(df.index.year).to_numpy()
            return df


        def strategy_logic(row):
            if pd.isna(row["mean_10"]) or pd.isna(row["sharpe"]):
                return 0
            return 1 if row["Close"] > row["mean_10"] and row["sharpe"] > 0 else -1
        """),
    "typed_helpers_with_constant_defaults": block("""
        LOOKBACK: int = 20


        def _sma(series: pd.Series, n: int = LOOKBACK) -> pd.Series:
            return series.rolling(n).mean()


        def _weighted(x, w=(1, 2, 3)):
            return sum(a * b for a, b in zip(x[-3:], w)) / sum(w)


        def _band(series: pd.Series, width: float | None = None, *, scale: float = 2.0) -> pd.Series:
            spread = series.rolling(LOOKBACK).std() * (scale if width is None else width)
            return _sma(series) + spread


        def generate_features(df: pd.DataFrame) -> pd.DataFrame:
            df["sma"] = _sma(df["Close"])
            df["upper"] = _band(df["Close"])
            df["weighted"] = df["Close"].rolling(3).apply(_weighted, raw=True)
            return df


        def strategy_logic(row: pd.Series, threshold: float = 0.0) -> int:
            if pd.isna(row["upper"]):
                return 0
            return 1 if row["weighted"] - row["sma"] > threshold else -1
        """),
}


def _ohlcv(rows: int = 320) -> pd.DataFrame:
    """A deterministic random-walk OHLCV frame with a DatetimeIndex named Date."""
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    index = pd.date_range("2001-01-01", periods=rows, freq="B", name="Date")
    return pd.DataFrame(
        {
            "Open": close * 0.999,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Volume": rng.integers(1_000, 5_000, rows).astype(float),
        },
        index=index,
    )


@pytest.mark.parametrize("source", list(BENIGN.values()), ids=list(BENIGN))
def test_legitimate_strategy_passes_vetting(source: str) -> None:
    vetted = vet_block(source)
    assert {"generate_features", "strategy_logic"} <= set(vetted.functions)


@pytest.mark.parametrize("source", list(BENIGN.values()), ids=list(BENIGN))
def test_legitimate_strategy_really_runs(source: str) -> None:
    vetted = vet_block(source)
    namespace: dict = {"pd": pd, "np": np, "math": math}
    exec(compile(vetted.tree, "<strategy>", "exec"), namespace)  # trusted test code: proves the block is real
    frame = namespace["generate_features"](_ohlcv())
    signals = [namespace["strategy_logic"](frame.iloc[i]) for i in range(0, len(frame), 16)]
    assert set(signals) <= {-1, 0, 1}


def test_vetted_block_lists_top_level_functions_and_constants() -> None:
    vetted = vet_block(BENIGN["helpers_and_constants"])
    assert vetted.source == BENIGN["helpers_and_constants"]
    assert isinstance(vetted.tree, ast.Module)
    assert vetted.functions == ("_momentum", "_drawdown", "generate_features", "strategy_logic")
    assert vetted.constants == ("FAST", "SLOW", "BANDS", "PARAMS", "ANNUAL", "START")


def test_vetted_block_is_frozen() -> None:
    vetted = vet_block(BASELINE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        vetted.source = "x"  # type: ignore[misc]
    assert isinstance(vetted, VettedBlock)


def test_syntax_error_becomes_candidate_error_with_line() -> None:
    with pytest.raises(CandidateError) as caught:
        vet_block("def generate_features(df):\n    return df\n\ndef strategy_logic(row:\n    return 0\n")
    assert caught.value.status == "syntax_error"
    assert caught.value.error_type == "SyntaxError"
    assert str(caught.value).startswith("line 4: SyntaxError: ")


def test_indentation_error_keeps_its_name() -> None:
    with pytest.raises(CandidateError) as caught:
        vet_block("def generate_features(df):\nreturn df\n")
    assert caught.value.status == "syntax_error"
    assert caught.value.error_type == "IndentationError"
    assert str(caught.value).startswith("line 2: IndentationError: expected an indented block")


def test_compile_time_error_is_a_syntax_error() -> None:
    with pytest.raises(CandidateError) as caught:
        vet_block(in_features("break"))
    assert caught.value.status == "syntax_error"
    assert str(caught.value) == "line 2: SyntaxError: 'break' outside loop"


def test_missing_strategy_logic_is_rejected() -> None:
    with pytest.raises(UnsafeCodeError, match=r"^line 1: a block without strategy_logic\(\) is not allowed"):
        vet_block("def generate_features(df):\n    return df\n")


def test_require_accepts_a_subset_kept_from_the_parent() -> None:
    vetted = vet_block("def strategy_logic(row):\n    return 1\n", require=("strategy_logic",))
    assert vetted.functions == ("strategy_logic",)


def test_strategy_logic_with_two_required_arguments_is_rejected() -> None:
    source = in_features("pass").replace("def strategy_logic(row):", "def strategy_logic(row, state):")
    with pytest.raises(
        UnsafeCodeError,
        match=r"^line 6: this signature of strategy_logic\(\) is not allowed "
        r"\(it must take exactly one argument, strategy_logic\(row\)\)",
    ):
        vet_block(source)


def test_strategy_logic_with_an_optional_second_argument_passes() -> None:
    source = in_features("pass").replace("def strategy_logic(row):", "def strategy_logic(row, threshold=0.5):")
    assert vet_block(source).functions == ("generate_features", "strategy_logic")


def test_generate_features_without_arguments_is_rejected() -> None:
    source = in_features("pass").replace("def generate_features(df):", "def generate_features():")
    with pytest.raises(UnsafeCodeError, match=r"^line 1: this signature of generate_features\(\) is not allowed"):
        vet_block(source)


def test_undefined_name_is_rejected_with_what_is_available() -> None:
    with pytest.raises(UnsafeCodeError, match=r"^line 2: name 'talib_rsi' is not defined \(only names defined"):
        vet_block(in_features("df['RSI'] = talib_rsi(df['Close'])"))


def test_long_numpy_name_needs_its_import() -> None:
    with pytest.raises(UnsafeCodeError, match=r"^line 2: name 'numpy' without `import numpy` is not allowed"):
        vet_block(in_features("df['x'] = numpy.log(df['Close'])"))


def test_local_variable_named_like_a_blocked_builtin_is_rejected() -> None:
    with pytest.raises(UnsafeCodeError, match=r"^line 2: the name 'dir' is not allowed .*choose another name"):
        vet_block(in_features("dir = 1"))


def test_oversized_block_is_rejected_before_parsing() -> None:
    source = in_features("pass") + "# padding\n" * 6_000
    with pytest.raises(UnsafeCodeError, match=r"is not allowed \(blocks are limited to 50,000 characters"):
        vet_block(source)


def test_expression_deeper_than_the_limit_is_rejected() -> None:
    deep = " + ".join(["df['Close']"] * (vet.MAX_DEPTH + 20))
    with pytest.raises(UnsafeCodeError, match=r"^line 2: nesting deeper than 100 levels is not allowed"):
        vet_block(in_features(f"df['x'] = {deep}"))


def test_pathological_nesting_is_rejected_not_crashed() -> None:
    with pytest.raises(UnsafeCodeError, match=r"^line 1: nesting this deep is not allowed"):
        vet_block("x = " + "-" * 40_000 + "1\n")


def test_whole_sample_lookahead_is_left_to_the_runtime_gate() -> None:
    # Not a safety question and not decidable statically; the look-ahead gate names the column and date.
    source = in_features(
        "df['z'] = (df['Close'] - df['Close'].mean()) / df['Close'].std()",
        "df['g'] = np.gradient(df['Close'].to_numpy())",
        "df['peek'] = df['Close'].iloc[-1]",
    )
    assert vet_block(source).functions == ("generate_features", "strategy_logic")


def test_every_allowlisted_module_attribute_exists_and_only_declared_submodules_are_modules() -> None:
    modules = {
        "numpy": np,
        "numpy.linalg": np.linalg,
        "numpy.random": np.random,
        "pandas": pd,
        "pandas.offsets": pd.offsets,
        "math": math,
    }
    for module_name, names in vet.MODULE_ATTRIBUTES.items():
        for name in names:
            value = getattr(modules[module_name], name)
            assert isinstance(value, types.ModuleType) == (f"{module_name}.{name}" in vet.MODULE_ATTRIBUTES), name


def test_every_builtin_is_allowed_forbidden_or_an_exception() -> None:
    import builtins

    public = {name for name in dir(builtins) if not name.startswith("_")}
    assert public <= vet.ALLOWED_BUILTINS | vet.FORBIDDEN_BUILTINS | vet.EXCEPTION_NAMES
    assert not vet.ALLOWED_BUILTINS & vet.FORBIDDEN_BUILTINS


def test_vetting_a_typical_block_takes_about_a_millisecond() -> None:
    source = BENIGN["helpers_and_constants"]
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        vet_block(source)
        samples.append(time.perf_counter() - start)
    assert statistics.median(samples) < 0.005  # ~1 ms measured; headroom for a shared 2-core machine


# ---------------------------------------------------------------------------------------------------------
# pandas string dispatch. agg, aggregate, apply and transform (on frames, series, groupby, rolling,
# expanding, ewm and resample objects), pivot_table/crosstab's aggfunc and NamedAgg look a function NAME
# up on the object with getattr, so a name built at run time reaches DataFrame.eval, whose `@name`
# resolves in pandas' own module globals (inspect, hence os).
# ---------------------------------------------------------------------------------------------------------
def rejection(source: str) -> str:
    """The message vet_block rejects `source` with."""
    with pytest.raises(UnsafeCodeError) as caught:
        vet_block(source)
    return str(caught.value)


DISPATCH_RULE = "pandas looks a function given by name up on the object; pass a function (def or lambda)"

# (id, setup lines, an expression that evaluates to "eval" at run time)
NAMES_BUILT_AT_RUN_TIME = [
    ("concatenation", [], '"ev" + "al"'),
    ("variable", ['name = "ev" + "al"'], "name"),
    ("f_string", [], "f\"{'ev'}al\""),
    ("slice", [], '"xevalx"[1:5]'),
    ("join", [], '"".join(["ev", "al"])'),
    ("str_call", ['name = "ev" + "al"'], "str(name)"),
    ("method_call", [], '"EVAL".lower()'),
    ("function_return", ["def pick():", '    return "ev" + "al"'], "pick()"),
    ("dict_lookup", ['names = {"f": "ev" + "al"}'], 'names["f"]'),
    ("conditional", [], '"mean" if len(df) < 0 else "ev" + "al"'),
]


@pytest.mark.parametrize(
    ("setup", "name"), [n[1:] for n in NAMES_BUILT_AT_RUN_TIME], ids=[n[0] for n in NAMES_BUILT_AT_RUN_TIME]
)
def test_agg_with_a_name_built_at_run_time_is_rejected(setup: list[str], name: str) -> None:
    message = rejection(in_features(*setup, f"leak = df.agg({name}, expr='@inspect.os')"))
    assert message.startswith(f"line {2 + len(setup)}: `")
    assert " as the function of agg() is not allowed (" in message
    assert message.endswith("a numpy function such as np.mean, or a literal name such as 'mean')")


NAME = '"ev" + "al"'
# (id, the call with NAME in a slot pandas dispatches, the method the message names)
DISPATCH_SLOTS = [
    ("frame_aggregate", f"df.aggregate({NAME})", "aggregate"),
    ("frame_apply", f"df.apply({NAME})", "apply"),
    ("frame_transform", f"df.transform({NAME})", "transform"),
    ("series_agg", f"df['Close'].agg({NAME})", "agg"),
    ("groupby_agg", f"df.groupby(df.index.year).agg({NAME})", "agg"),
    ("groupby_apply", f"df.groupby(df.index.year).apply({NAME})", "apply"),
    ("groupby_transform", f"df.groupby(df.index.year).transform({NAME})", "transform"),
    ("rolling_agg", f"df['Close'].rolling(5).agg({NAME})", "agg"),
    ("rolling_apply", f"df['Close'].rolling(5).apply({NAME})", "apply"),
    ("expanding_aggregate", f"df['Close'].expanding().aggregate({NAME})", "aggregate"),
    ("ewm_agg", f"df['Close'].ewm(span=5).agg({NAME})", "agg"),
    ("resample_apply", f"df.resample('W').apply({NAME})", "apply"),
    ("func_keyword", f"df.agg(func={NAME})", "agg"),
    ("resample_transform_arg_keyword", f"df.resample('W').transform(arg={NAME})", "transform"),
    ("list_element", f"df.agg(['mean', {NAME}])", "agg"),
    ("tuple_element", f"df.agg(('mean', {NAME}))", "agg"),
    ("dict_value", f"df.agg({{'Close': {NAME}}})", "agg"),
    ("list_in_a_dict_value", f"df.agg({{'Close': ['mean', {NAME}]}})", "agg"),
    ("label_of_a_pair_in_a_list", f"df['Close'].agg([({NAME}, 'mean')])", "agg"),
    ("named_aggregation_pair", f"df.groupby(df.index.year).agg(out=('Close', {NAME}))", "agg"),
    ("named_aggregation_keyword", f"df.groupby(df.index.year)['Close'].agg(out={NAME})", "agg"),
    ("groupby_transform_named_aggregation", f"df.groupby(df.index.year).transform(out=('Close', {NAME}))", "transform"),
    ("named_agg_positional", f"df.groupby(df.index.year).agg(out=pd.NamedAgg('Close', {NAME}))", "NamedAgg"),
    ("named_agg_keyword", f"pd.NamedAgg(column='Close', aggfunc={NAME})", "NamedAgg"),
    ("pivot_table_aggfunc", f"pd.pivot_table(df, values='Close', index=df.index.year, aggfunc={NAME})", "pivot_table"),
    ("pivot_table_positional_aggfunc", f"pd.pivot_table(df, 'Close', df.index.year, None, {NAME})", "pivot_table"),
    (
        "frame_pivot_table_aggfunc",
        f"df.pivot_table(values='Close', index=df.index.year, aggfunc={NAME})",
        "pivot_table",
    ),
    ("frame_pivot_table_positional_aggfunc", f"df.pivot_table('Close', df.index.year, None, {NAME})", "pivot_table"),
    ("crosstab_aggfunc", f"pd.crosstab(df.index.year, df.index.month, values=df['Close'], aggfunc={NAME})", "crosstab"),
    (
        "crosstab_positional_aggfunc",
        f"pd.crosstab(df.index.year, df.index.month, df['Close'], None, None, {NAME})",
        "crosstab",
    ),
]


@pytest.mark.parametrize(("call", "method"), [s[1:] for s in DISPATCH_SLOTS], ids=[s[0] for s in DISPATCH_SLOTS])
def test_every_slot_pandas_dispatches_by_name_takes_only_a_safe_function(call: str, method: str) -> None:
    message = rejection(in_features(f"out = {call}"))
    assert message.startswith("line 2: `'ev' + 'al'` as the function of ")
    assert f"as the function of {method}() is not allowed ({DISPATCH_RULE}" in message


@pytest.mark.parametrize("name", ["memory_usage", "pipe", "apply", "to_numpy", "bfill"])
def test_a_literal_name_outside_the_reducer_allowlist_is_rejected(name: str) -> None:
    message = rejection(in_features(f"out = df.agg({name!r})"))
    assert message.startswith(
        f"line 2: `{name!r}` as the function of agg() is not allowed (only reducer and "
        "transform names such as 'mean', 'std' or 'cumsum' may be given as strings"
    )


def test_no_allowlisted_literal_name_takes_a_function_or_reads_later_rows() -> None:
    frame = pd.DataFrame({"Close": [1.0, 2.0]}, index=pd.date_range("2001-01-01", periods=2))
    objects = (frame, frame["Close"], frame.groupby([0, 0]), frame.rolling(2), frame.ewm(span=2), frame.resample("D"))
    for name in vet.DISPATCH_NAMES:
        methods = [getattr(obj, name) for obj in objects if callable(getattr(obj, name, None))]
        methods += [getattr(np, name)] if hasattr(np, name) else []
        assert methods, name
        assert name not in ("bfill", "backfill", "interpolate"), name
        for method in methods:
            try:
                parameters = inspect.signature(method).parameters
            except ValueError:  # a numpy ufunc: takes arrays only
                continue
            assert not {"func", "arg", "aggfunc", "function", "f"} & set(parameters), (name, method)


def test_star_args_in_a_dispatch_call_are_rejected() -> None:
    message = rejection(in_features("names = ['mean']", "out = df.agg(*names)"))
    assert message.startswith(
        "line 3: unpacking `*names` into agg() is not allowed (pandas could take a function "
        "name from it; pass the arguments one by one)"
    )


def test_double_star_kwargs_in_a_dispatch_call_are_rejected() -> None:
    message = rejection(in_features("spec = {'func': 'mean'}", "out = df.agg(**spec)"))
    assert message.startswith("line 3: unpacking `**spec` into agg() is not allowed (pandas could take a function")


def test_a_dispatch_method_used_as_a_value_is_rejected() -> None:
    message = rejection(in_features("run = df.aggregate", f"out = run({NAME}, expr='@inspect.os')"))
    assert message.startswith(
        "line 2: attribute 'aggregate' used as a value is not allowed (methods that take "
        "function names must be called directly, as in df.agg('mean'), so that the functions "
        "given to them can be checked)"
    )


def test_an_unbound_dispatch_method_passed_to_pipe_is_rejected() -> None:
    message = rejection(in_features(f"out = df.pipe(pd.DataFrame.agg, {NAME}, expr='@inspect.os')"))
    assert message.startswith("line 2: attribute 'agg' used as a value is not allowed")


def test_a_pandas_class_is_not_a_function_for_dispatch() -> None:
    # pd.DataFrame.agg(pd.DataFrame, name, ...) runs DataFrame.agg with the class as self and `name` as func.
    message = rejection(in_features(f"out = pd.DataFrame.agg(pd.DataFrame, {NAME}, 0, df, '@inspect.os')"))
    assert message.startswith(f"line 2: `pd.DataFrame` as the function of agg() is not allowed ({DISPATCH_RULE}")


def test_a_def_function_also_assigned_elsewhere_is_rejected_as_a_function() -> None:
    source = block(f"""
        def pick(x):
            return x


        def generate_features(df):
            df["m"] = df["Close"].agg(pick)
            return df


        def strategy_logic(row):
            pick = {NAME}
            return 0
        """)
    assert rejection(source).startswith(
        "line 6: `pick` as the function of agg() is not allowed (the name 'pick' is bound by something "
        "other than def in this block, so it may hold a name at run time; pass a function (def or lambda)"
    )


def test_a_def_function_name_reused_as_a_parameter_is_rejected_as_a_function() -> None:
    source = block("""
        def pick(x):
            return x


        def generate_features(df, pick=None):
            df["m"] = df["Close"].agg(pick)
            return df


        def strategy_logic(row):
            return 0
        """)
    assert rejection(source).startswith("line 6: `pick` as the function of agg() is not allowed (the name 'pick'")


def test_a_builtin_name_rebound_in_the_block_is_rejected_as_a_function() -> None:
    message = rejection(in_features(f"str = {NAME}", "out = df.agg(str, expr='@inspect.os')"))
    assert message.startswith(
        "line 3: `str` as the function of agg() is not allowed (the name 'str' is bound by something other than def"
    )


def test_an_imported_pandas_class_is_not_a_function_for_dispatch() -> None:
    message = rejection(
        "from pandas import DataFrame\n"
        + in_features(f"out = pd.DataFrame.agg(DataFrame, {NAME}, 0, df, '@inspect.os')")
    )
    assert message.startswith("line 3: `DataFrame` as the function of agg() is not allowed (the name 'DataFrame'")


def test_from_import_of_a_dispatch_function_is_rejected() -> None:
    message = rejection("from pandas import pivot_table as table\n" + in_features("pass"))
    assert message.startswith(
        "line 1: import of 'pivot_table' from pandas is not allowed (call it as "
        "pd.pivot_table(...), so that the functions given to it can be checked)"
    )


def test_other_keywords_of_a_dispatch_call_keep_ordinary_vetting() -> None:
    message = rejection(in_features("out = df.apply(lambda r, f: r, axis=1, args=(open,))"))
    assert message.startswith("line 2: name 'open' is not allowed (files, input and interpreter access are blocked")


def test_keywords_passed_through_to_the_function_may_be_computed() -> None:
    source = in_features(
        "level = 0.25",
        "df['q'] = df['Close'].rolling(10).agg('quantile', q=level)",
        "df['r'] = df['Close'].apply(lambda x, k: x * k, args=(level,))",
        "out = df.apply(np.mean, axis=1, result_type='reduce', raw=False)",
    )
    assert vet_block(source).functions == ("generate_features", "strategy_logic")


def test_map_does_not_look_names_up_and_is_not_a_dispatch_method() -> None:
    # Series.map, Index.map and DataFrame.map call what they are given; a string is "not callable".
    for mapper in (pd.Series([1.0]).map, pd.Index([1.0]).map, pd.DataFrame({"a": [1.0]}).map):
        with pytest.raises(TypeError):
            mapper("abs")
    source = in_features("names = {1: 'up', -1: 'down'}", "df['label'] = np.sign(df['Close'].diff()).map(names)")
    assert vet_block(source).functions == ("generate_features", "strategy_logic")


def test_lowercase_allowlisted_module_names_are_not_pandas_classes() -> None:
    # The vetter takes np/pd/math chains ending in a lowercase name as functions; a pandas class there would
    # let `pd.DataFrame.agg(<class>, name, ...)` dispatch a name on the class.
    modules = {
        "numpy": np,
        "numpy.linalg": np.linalg,
        "numpy.random": np.random,
        "pandas": pd,
        "pandas.offsets": pd.offsets,
        "math": math,
    }
    for module_name, names in vet.MODULE_ATTRIBUTES.items():
        for name in names:
            value = getattr(modules[module_name], name)
            if isinstance(value, type) and issubclass(value, (pd.Series, pd.DataFrame, pd.Index)):
                assert name[:1].isupper(), f"{module_name}.{name}"


# Attacks that run: executed without vetting in this (trusted) process, each reaches the os module through
# pandas' string dispatch; vet_block rejects each.
RUNNING_DISPATCH_ATTACKS = {
    "agg_with_a_concatenated_name": block("""
        LEAK = None


        def generate_features(df):
            global LEAK
            LEAK = df.agg("ev" + "al", expr="@inspect.os")
            return df


        def strategy_logic(row):
            return 0
        """),
    "aliased_aggregate_with_a_joined_name": block("""
        LEAK = None


        def generate_features(df):
            global LEAK
            run = df.aggregate
            LEAK = run("".join(["ev", "al"]), expr="@inspect.os")
            return df


        def strategy_logic(row):
            return 0
        """),
    "unbound_agg_in_a_default_argument": block("""
        LEAK = None


        def generate_features(df):
            global LEAK
            LEAK = strategy_logic(None)
            return df


        def strategy_logic(row, probe=pd.DataFrame.agg(pd.DataFrame, "ev" + "al", 0, pd.DataFrame(), "@inspect.os")):
            return probe if row is None else 0
        """),
}


@pytest.mark.parametrize("source", list(RUNNING_DISPATCH_ATTACKS.values()), ids=list(RUNNING_DISPATCH_ATTACKS))
def test_dispatch_escape_reaches_os_unvetted_and_is_rejected(source: str) -> None:
    namespace: dict = {"pd": pd, "np": np, "math": math}
    exec(compile(source, "<attack>", "exec"), namespace)  # trusted test code: proves the hole is real
    namespace["generate_features"](_ohlcv(20))
    assert namespace["LEAK"] is os
    with pytest.raises(UnsafeCodeError, match=r"^line \d+: .* is not allowed \("):
        vet_block(source)


# ---------------------------------------------------------------------------------------------------------
# Code run while functions are defined: default values and annotations are evaluated by `def` and
# `lambda` themselves, before any harness code is called.
# ---------------------------------------------------------------------------------------------------------
DEFAULT_RULE = "default values are evaluated when the function is defined, so they must be constants"

DEFAULTS_THAT_RUN_CODE = [
    ("calls_block_code", ["def helper():", "    return 1", "def inner(x, n=helper()):", "    return x"], 4, "n"),
    ("keyword_only_default", ["def helper():", "    return 1", "def inner(x, *, n=helper()):", "    return x"], 4, "n"),
    (
        "positional_only_default",
        ["def helper():", "    return 1", "def inner(x, n=helper(), /):", "    return x"],
        4,
        "n",
    ),
    ("lambda_default", ["def helper():", "    return 1", "inner = lambda x, n=helper(): x"], 4, "n"),
    ("default_is_a_lambda", ["def inner(x, f=lambda: 0):", "    return x"], 2, "f"),
    ("default_is_a_comprehension", ["def inner(x, w=[i for i in range(3)]):", "    return x"], 2, "w"),
    ("default_calls_print", ["def inner(x, w=print('x')):", "    return x"], 2, "w"),
    ("default_calls_a_method", ["def inner(x, w=pd.Series([1]).sum()):", "    return x"], 2, "w"),
]


@pytest.mark.parametrize(
    ("lines", "line", "name"), [d[1:] for d in DEFAULTS_THAT_RUN_CODE], ids=[d[0] for d in DEFAULTS_THAT_RUN_CODE]
)
def test_default_value_that_runs_code_is_rejected(lines: list[str], line: int, name: str) -> None:
    message = rejection(in_features(*lines))
    assert message.startswith(f"line {line}: the default value of {name} is not allowed ({DEFAULT_RULE}: literals")


def test_default_of_a_top_level_function_that_runs_code_is_rejected() -> None:
    source = in_features("pass").replace(
        "def strategy_logic(row):", "def strategy_logic(row, cut=generate_features(None)):"
    )
    assert rejection(source).startswith("line 6: the default value of cut is not allowed")


ANNOTATION_RULE = "annotations are evaluated when the function is defined"

ANNOTATIONS_THAT_RUN_CODE = [
    ("argument", ["def inner(x: print('x')):", "    return x"], 2),
    ("return", ["def inner(x) -> len('abc'):", "    return x"], 2),
    ("lambda_in_subscript", ["def inner(x: list[(lambda: int)()]):", "    return x"], 2),
    ("arithmetic", ["def inner(x: 1 + 2):", "    return x"], 2),
]


@pytest.mark.parametrize(
    ("lines", "line"), [a[1:] for a in ANNOTATIONS_THAT_RUN_CODE], ids=[a[0] for a in ANNOTATIONS_THAT_RUN_CODE]
)
def test_annotation_that_runs_code_is_rejected(lines: list[str], line: int) -> None:
    message = rejection(in_features(*lines))
    assert message.startswith(f"line {line}: the annotation `")
    assert f"is not allowed ({ANNOTATION_RULE}; use names, attributes, subscripts and |" in message


def test_top_level_variable_annotation_that_runs_code_is_rejected() -> None:
    # Module-level annotations are evaluated at import, like the value.
    message = rejection("LIMIT: print('x') = 3\n" + in_features("pass"))
    assert message.startswith(f"line 1: the annotation `print('x')` is not allowed ({ANNOTATION_RULE}")


def test_decorators_stay_rejected() -> None:
    message = rejection(in_features("@np.vectorize", "def inner(x):", "    return x"))
    assert message.startswith("line 2: decorator on inner() is not allowed (decorators run code at definition time")


# ---------------------------------------------------------------------------------------------------------
# Control characters: they drive the terminal that shows a message (ESC sequences, OSC 52 clipboard writes)
# and hide or reorder code (bidi overrides), so they are refused before anything quotes the block.
# ---------------------------------------------------------------------------------------------------------
CONTROL_RULE = "control, bidirectional-formatting and stray carriage-return characters"

CONTROL_CHARACTERS = [
    ("nul", "\x00", "U+0000"),
    ("bell", "\x07", "U+0007"),
    ("backspace", "\x08", "U+0008"),
    ("form_feed", "\x0c", "U+000C"),
    ("escape", "\x1b", "U+001B"),
    ("delete", "\x7f", "U+007F"),
    ("c1_csi", "\x9b", "U+009B"),
    ("c1_next_line", "\x85", "U+0085"),
    ("right_to_left_override", "\u202e", "U+202E"),
    ("left_to_right_embedding", "\u202a", "U+202A"),
    ("first_strong_isolate", "\u2068", "U+2068"),
    ("pop_directional_isolate", "\u2069", "U+2069"),
    ("right_to_left_mark", "\u200f", "U+200F"),
    ("arabic_letter_mark", "\u061c", "U+061C"),
    ("lone_carriage_return", "\r", "U+000D"),
]


@pytest.mark.parametrize(("char", "code"), [c[1:] for c in CONTROL_CHARACTERS], ids=[c[0] for c in CONTROL_CHARACTERS])
def test_control_character_is_rejected_with_its_code_point_and_line(char: str, code: str) -> None:
    message = rejection(in_features("x = 1", f"label = 'up{char}down'"))
    assert message.startswith(f"line 3: the character {code} is not allowed ({CONTROL_RULE}")
    assert char not in message


def test_control_character_is_rejected_before_any_line_is_quoted() -> None:
    # A top-level statement is quoted in its message; the escape sequence must never reach that quote.
    osc52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"
    message = rejection(f"print('{osc52}')\n" + in_features("pass"))
    assert message.startswith("line 1: the character U+001B is not allowed")
    assert "\x1b" not in message and "\x07" not in message


def test_control_character_in_a_comment_is_rejected() -> None:
    assert rejection(in_features("pass", "# \u202e hidden")).startswith("line 3: the character U+202E")


def test_control_character_is_reported_even_in_an_oversized_block() -> None:
    source = in_features("x = '\x1b'") + "# padding\n" * 6_000
    assert rejection(source).startswith("line 2: the character U+001B is not allowed")


def test_tab_newline_and_crlf_line_endings_are_allowed() -> None:
    source = in_features("label = 'a\tb'").replace("\n", "\r\n")
    assert vet_block(source).functions == ("generate_features", "strategy_logic")


def test_escaped_control_characters_in_strings_are_allowed() -> None:
    source = in_features("label = '\\x1b[0m\\u202e'")
    assert vet_block(source).functions == ("generate_features", "strategy_logic")


# ---------------------------------------------------------------------------------------------------------
# Delimiter lines: trade.py marks its agent block with two comment lines; a block holding one would be cut
# there when the file is read back.
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("delimiter", "which"), [(BLOCK_START, "start"), (BLOCK_END, "end")], ids=["start", "end"])
@pytest.mark.parametrize(
    "spelling", ["{}", "{}   ", "    {}", "{}\r"], ids=["exact", "trailing_spaces", "indented", "crlf"]
)
def test_block_holding_a_delimiter_line_is_rejected(delimiter: str, which: str, spelling: str) -> None:
    message = rejection(in_features("pass") + spelling.format(delimiter) + "\n")
    assert message.startswith(
        f"line 8: the trade.py {which} delimiter line is not allowed (it marks where the agent block"
    )


def test_longer_dash_comment_is_allowed() -> None:
    source = in_features("# " + "-" * 66, "x = 1") + "# " + "-" * 70 + "\n"
    assert vet_block(source).functions == ("generate_features", "strategy_logic")


def test_delimiter_text_inside_a_line_is_allowed() -> None:
    source = in_features(f"note = {BLOCK_END!r}", f"x = 1  {BLOCK_START}")
    assert vet_block(source).functions == ("generate_features", "strategy_logic")
