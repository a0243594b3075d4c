"""AST vetting: attacks are rejected with the rule and the line; legitimate strategies pass and still run."""

from __future__ import annotations

import ast
import dataclasses
import math
import statistics
import textwrap
import time
import types

import numpy as np
import pandas as pd
import pytest

from autotrade.candidate import baseline_source, extract_block
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
    ("import_os", "import os\n" + in_features("pass"), 1,
     "import of 'os' is not allowed (only numpy as np, pandas as pd and math are available; "
     "they are already imported)"),
    ("import_subprocess_inside_function", in_features("import subprocess"), 2,
     "import of 'subprocess' is not allowed (only numpy as np"),
    ("from_builtins_import_open", "from builtins import open as reader\n" + in_features("pass"), 1,
     "import from 'builtins' is not allowed (only numpy as np"),
    ("from_numpy_import_lib", "from numpy import lib\n" + in_features("pass"), 1,
     "import of 'lib' from numpy is not allowed (numpy and pandas internals reach the operating system)"),
    ("dunder_import", in_features("__import__('os').system('id')"), 2,
     "name '__import__' is not allowed (dunder names are blocked)"),
    ("os_without_import", in_features("os.system('id')"), 2,
     "name 'os' is not allowed (only numpy as np, pandas as pd and math are available"),
    ("pandas_io_common_os", in_features("pd.io.common.os.system('touch /tmp/pwned')"), 2,
     "attribute 'io' of pandas is not allowed (numpy and pandas internals reach the operating system)"),
    ("numpy_lib_open_memmap", in_features("np.lib.format.open_memmap('/tmp/x', mode='w+', shape=(1,))"), 2,
     "attribute 'lib' of numpy is not allowed (numpy and pandas internals reach the operating system)"),
    ("numpy_ctypeslib", in_features("np.ctypeslib.load_library('libc', '/lib')"), 2,
     "attribute 'ctypeslib' of numpy is not allowed (numpy and pandas internals reach the operating system)"),
    ("ndarray_ctypes_pointer", in_features("ptr = df['Close'].values.ctypes.data"), 2,
     "attribute 'ctypes' is not allowed (numpy and pandas internals reach the operating system)"),
    ("pandas_read_pickle", in_features("df = pd.read_pickle('/tmp/payload.pkl')"), 2,
     "attribute 'read_pickle' of pandas is not allowed (file and network I/O is blocked"),
    ("pandas_read_csv_url", in_features("extra = pd.read_csv('http://127.0.0.1:8000/leak.csv')"), 2,
     "attribute 'read_csv' of pandas is not allowed (file and network I/O is blocked"),
    ("frame_to_csv", in_features("df.to_csv('/tmp/x.csv')"), 2,
     "attribute 'to_csv' is not allowed (pandas writers are blocked; only in-memory conversions"),
    ("frame_to_pickle", in_features("df['Close'].to_pickle('/tmp/best_trade.pkl')"), 2,
     "attribute 'to_pickle' is not allowed (pandas writers are blocked"),
    ("frame_to_string_buffer", in_features("df.to_string(buf='/tmp/learnings.md')"), 2,
     "attribute 'to_string' is not allowed (pandas writers are blocked"),
    ("numpy_save", in_features("np.save('/tmp/x.npy', df.values)"), 2,
     "attribute 'save' of numpy is not allowed (file and network I/O is blocked"),
    ("numpy_load_pickle", in_features("obj = np.load('/tmp/x.npy', allow_pickle=True)"), 2,
     "attribute 'load' of numpy is not allowed (file and network I/O is blocked"),
    ("numpy_fromfile", in_features("raw = np.fromfile('/etc/passwd', dtype=np.uint8)"), 2,
     "attribute 'fromfile' of numpy is not allowed (file and network I/O is blocked"),
    ("numpy_memmap", in_features("m = np.memmap('/tmp/x', mode='w+', shape=(4,))"), 2,
     "attribute 'memmap' of numpy is not allowed (file and network I/O is blocked"),
    ("numpy_datasource", in_features("np.DataSource('/tmp').open('http://127.0.0.1/x')"), 2,
     "attribute 'DataSource' of numpy is not allowed (file and network I/O is blocked"),
    ("array_tofile", in_features("df['Close'].to_numpy().tofile('/tmp/x')"), 2,
     "attribute 'tofile' is not allowed (file and network I/O is blocked"),
    ("pandas_eval", in_features("total = pd.eval('df.Close.sum()')"), 2,
     "attribute 'eval' of pandas is not allowed (code in strings is blocked"),
    ("frame_query_engine", in_features("df = df.query('Close > 0', engine='python')"), 2,
     "attribute 'query' is not allowed (code in strings is blocked"),
    ("format_dunder_walk", in_features("leak = '{0.__class__}'.format(df)"), 2,
     "the string '{0.__class__}' is not allowed (strings naming dunder attributes are blocked"),
    ("format_attribute_walk", in_features("leak = '{0.real}'.format(1)"), 2,
     "attribute 'format' is not allowed (format strings can walk attributes; use an f-string"),
    ("format_map", in_features("leak = '{x}'.format_map({'x': 1})"), 2,
     "attribute 'format_map' is not allowed (format strings can walk attributes; use an f-string"),
    ("string_dispatch_to_writer", in_features("df.apply('to_pickle', args=('/tmp/x',))"), 2,
     "the string 'to_pickle' is not allowed (it names a blocked method that pandas would call by name)"),
    ("getattr_built_up_string", in_features("getattr(df, 'to_' + 'csv')('/tmp/x')"), 2,
     "name 'getattr' is not allowed (access by computed name is blocked"),
    ("vars_call", in_features("ns = vars(df)"), 2,
     "name 'vars' is not allowed (access by computed name is blocked"),
    ("globals_call", in_features("ns = globals()"), 2,
     "name 'globals' is not allowed (access by computed name is blocked"),
    ("private_attribute", in_features("data = df._data"), 2,
     "attribute '_data' is not allowed (private attributes are blocked)"),
    ("generator_frame_walk", in_features("g = (x for x in [1])", "f = g.gi_frame.f_back.f_globals"), 3,
     "attribute 'gi_frame' is not allowed (frame and class introspection is blocked)"),
    ("traceback_frame_walk", in_features("tb = None", "harness = tb.tb_frame"), 3,
     "attribute 'tb_frame' is not allowed (frame and class introspection is blocked)"),
    ("frame_back_walk", in_features("frame = None", "caller = frame.f_back"), 3,
     "attribute 'f_back' is not allowed (frame and class introspection is blocked)"),
    ("exception_traceback", in_features("try:", "    1 / 0", "except ZeroDivisionError as e:",
                                        "    frame = e.__traceback__"), 5,
     "attribute '__traceback__' is not allowed (private attributes are blocked)"),
    ("decorator_smuggling", block("""
        def generate_features(df):
            return df


        @pd.Series
        def strategy_logic(row):
            return 0
        """), 5,
     "decorator on strategy_logic() is not allowed (decorators run code at definition time"),
    ("default_argument_open", block("""
        def generate_features(df):
            return df


        def strategy_logic(row, reader=open):
            return 0
        """), 5,
     "name 'open' is not allowed (files, input and interpreter access are blocked"),
    ("lambda_returning_open", in_features("reader = lambda: open"), 2,
     "name 'open' is not allowed (files, input and interpreter access are blocked"),
    ("type_builds_class", in_features("Evil = type('Evil', (), {})"), 2,
     "name 'type' is not allowed (class machinery is blocked"),
    ("type_mro_walk", in_features("base = type(df).mro()[-1]"), 2,
     "name 'type' is not allowed (class machinery is blocked"),
    ("mro_walk", in_features("base = pd.Series.mro()[-1]"), 2,
     "attribute 'mro' is not allowed (frame and class introspection is blocked)"),
    ("class_with_metaclass", "class Meta(type):\n    pass\n" + in_features("pass"), 1,
     "class definition is not allowed (classes bring metaclasses and descriptors"),
    ("async_def", "async def generate_features(df):\n    return df\n", 1,
     "async function is not allowed (strategies are plain synchronous functions)"),
    ("top_level_print", "print('x')\n" + in_features("pass"), 1,
     "top-level statement `print('x')` is not allowed (the top level may hold only function definitions"),
    ("top_level_for_loop", "for i in range(3):\n    pass\n" + in_features("pass"), 1,
     "top-level statement `for i in range(3):` is not allowed (the top level may hold only function definitions"),
    ("top_level_call_of_block_code", "def helper():\n    return 1\nX = helper()\n" + in_features("pass"), 3,
     "the top-level value of X is not allowed (top-level values must be constants"),
    ("module_alias_top_level", "m = np\n" + in_features("pass"), 1,
     "using the module 'np' as a value is not allowed (modules may only be used through their functions"),
    ("module_alias_in_container", in_features("m = [np][0]", "m.lib"), 2,
     "using the module 'np' as a value is not allowed"),
    ("submodule_as_value", in_features("la = np.linalg"), 2,
     "using the module 'numpy.linalg' as a value is not allowed"),
    ("rebind_module_name", in_features("np = df"), 2,
     "binding the name 'np' is not allowed ('np' is reserved for the numpy module)"),
    ("patch_series_std", in_features("pd.Series.std = lambda self, *a, **k: 1e-9"), 2,
     "assigning to attribute 'std' is not allowed (attribute assignment can patch pandas"),
    ("patch_series_std_top_level", "pd.Series.std = None\n" + in_features("pass"), 1,
     "assigning to attribute 'std' is not allowed (attribute assignment can patch pandas"),
    ("compile_call", in_features("code = compile('1', 'x', 'eval')"), 2,
     "name 'compile' is not allowed (running code from strings is blocked)"),
    ("exec_call", in_features("exec('import os')"), 2,
     "name 'exec' is not allowed (running code from strings is blocked)"),
    ("breakpoint_call", in_features("breakpoint()"), 2,
     "name 'breakpoint' is not allowed (files, input and interpreter access are blocked"),
    ("shadowed_builtin_elsewhere", in_features("open = None"), 2,
     "the name 'open' is not allowed (it is the name of a blocked builtin; choose another name)"),
    ("numpy_random", in_features("noise = np.random.rand(len(df))"), 2,
     "attribute 'random' of numpy is not allowed (random numbers make a strategy irreproducible"),
    ("plot_accessor", in_features("df.plot()"), 2,
     "attribute 'plot' is not allowed (plotting, styling and global options are blocked)"),
    ("pandas_set_option", in_features("pd.set_option('display.max_rows', 1)"), 2,
     "attribute 'set_option' of pandas is not allowed (plotting, styling and global options are blocked)"),
    ("numpy_test_runner", in_features("np.test()"), 2,
     "attribute 'test' of numpy is not allowed (only listed numpy functions are available"),
]

LOOKAHEAD = [
    ("negative_shift", in_features("df['next'] = df['Close'].shift(-1)"), 2,
     "shift(-1) is not allowed (a negative shift reads future rows; use a positive lag such as shift(1))"),
    ("negative_shift_keyword", in_features("df['next'] = df['Close'].shift(periods=-5)"), 2,
     "shift(-5) is not allowed (a negative shift reads future rows"),
    ("negative_pct_change", in_features("df['fwd'] = df['Close'].pct_change(-1)"), 2,
     "pct_change(-1) is not allowed (a negative pct_change reads future rows"),
    ("centred_window", in_features("df['m'] = df['Close'].rolling(5, center=True).mean()"), 2,
     "center=True is not allowed (a centred window reads future rows"),
    ("backward_fill", in_features("df['x'] = df['Close'].rolling(5).mean().bfill()"), 2,
     "attribute 'bfill' is not allowed (it fills rows from later rows, which is look-ahead; use ffill())"),
    ("backfill", in_features("df['x'] = df['Close'].backfill()"), 2,
     "attribute 'backfill' is not allowed (it fills rows from later rows"),
    ("interpolate", in_features("df['x'] = df['Close'].interpolate()"), 2,
     "attribute 'interpolate' is not allowed (it fills rows from later rows"),
    ("fillna_method_bfill", in_features("df['x'] = df['Close'].fillna(method='bfill')"), 2,
     "method='bfill' is not allowed (backward fill copies later rows into earlier ones; use ffill())"),
]


@pytest.mark.parametrize(("source", "line", "message"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_is_rejected_with_rule_and_line(source: str, line: int, message: str) -> None:
    with pytest.raises(UnsafeCodeError) as caught:
        vet_block(source)
    assert str(caught.value).startswith(f"line {line}: {message}")
    assert caught.value.line == line


@pytest.mark.parametrize(("source", "line", "message"), [a[1:] for a in LOOKAHEAD], ids=[a[0] for a in LOOKAHEAD])
def test_static_lookahead_is_rejected_with_explanation(source: str, line: int, message: str) -> None:
    with pytest.raises(UnsafeCodeError) as caught:
        vet_block(source)
    assert str(caught.value).startswith(f"line {line}: {message}")


BASELINE = extract_block(baseline_source())

BENIGN = {
    "baseline_sma_crossover": BASELINE,
    "rsi": block('''
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
        '''),
    "bollinger_bands": block('''
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
        '''),
    "macd_ewm": block('''
        def generate_features(df):
            fast = df["Close"].ewm(span=12, adjust=False).mean()
            slow = df["Close"].ewm(span=26, adjust=False).mean()
            df["MACD"] = fast - slow
            df["MACD_signal"] = df["MACD"].ewm(span=9, adjust=False).mean()
            df["MACD_hist"] = df["MACD"] - df["MACD_signal"]
            return df


        def strategy_logic(row):
            return 1 if row.MACD_hist > 0 else -1
        '''),
    "breakout_previous_high": block('''
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
        '''),
    "volatility_filter": block('''
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
        '''),
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
    "comprehension_and_fstring_columns": block('''
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
        '''),
    "lambda_apply_and_select": block('''
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
        '''),
    "import_numpy_tolerated": block('''
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
        '''),
    "from_math_import_sqrt_tolerated": block('''
        from math import sqrt, log as ln
        SCALE = sqrt(252)


        def generate_features(df):
            df["vol"] = df["Close"].pct_change().rolling(21).std() * SCALE
            df["log_close"] = df["Close"].apply(ln)
            return df


        def strategy_logic(row):
            return 1 if row["vol"] < 0.2 else -1
        '''),
    "stateful_with_global_and_try": block('''
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
        '''),
    "numpy_arrays_and_errstate": block('''
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
        '''),
}


def _ohlcv(rows: int = 320) -> pd.DataFrame:
    """A deterministic random-walk OHLCV frame with a DatetimeIndex named Date."""
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    index = pd.date_range("2001-01-01", periods=rows, freq="B", name="Date")
    return pd.DataFrame(
        {"Open": close * 0.999, "High": close * 1.01, "Low": close * 0.99, "Close": close,
         "Volume": rng.integers(1_000, 5_000, rows).astype(float)},
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
    with pytest.raises(UnsafeCodeError, match=r"^line 6: this signature of strategy_logic\(\) is not allowed "
                                              r"\(it must take exactly one argument, strategy_logic\(row\)\)"):
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
    source = in_features("df['z'] = (df['Close'] - df['Close'].mean()) / df['Close'].std()",
                         "df['g'] = np.gradient(df['Close'].to_numpy())",
                         "df['peek'] = df['Close'].iloc[-1]")
    assert vet_block(source).functions == ("generate_features", "strategy_logic")


def test_every_allowlisted_module_attribute_exists_and_only_declared_submodules_are_modules() -> None:
    modules = {"numpy": np, "numpy.linalg": np.linalg, "pandas": pd, "math": math}
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
