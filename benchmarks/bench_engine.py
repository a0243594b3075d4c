"""Speed benchmarks on the bundled S&P 500: `python benchmarks/bench_engine.py` prints `key: value` lines.

To add a benchmark, write a function that takes the Fixture and returns `{key: value}` and append it to
BENCHMARKS; `main()` runs each in order and prints its lines.
"""

from __future__ import annotations

import compileall
import contextlib
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import autotrade
from autotrade.candidate import baseline_source, extract_block
from autotrade.data.prepared import PreparedData, load_prepared, prepare_data
from autotrade.data.sources import load_bundled
from autotrade.engine.backtest import BacktestSettings, Fill, run_window
from autotrade.engine.metrics import METRIC_KEYS, periods_per_year
from autotrade.evaluation.evaluate import evaluate_block
from autotrade.sandbox.pool import SandboxPool

SEED_SETTINGS = BacktestSettings(fill=Fill.CLOSE, cost_bps=0.0)
ORIGINAL = Path(__file__).with_name("original_trade.py")


@dataclass(frozen=True)
class Fixture:
    """What every benchmark may use: the bundled S&P 500 and the baseline's signals on it."""

    prices: pd.DataFrame
    signals: np.ndarray
    data_dir: Path  # the bundled S&P 500 prepared with its default splits
    data: PreparedData


def baseline_signals(frame: pd.DataFrame) -> np.ndarray:
    """The packaged 20/50 SMA block's signals, features computed on the whole frame."""
    namespace: dict[str, object] = {}
    exec(extract_block(baseline_source()), namespace)  # trusted: our own template
    features = namespace["generate_features"](frame.copy())  # type: ignore[operator]
    logic = namespace["strategy_logic"]
    return np.array([logic(row) for _, row in features.iterrows()], dtype=float)  # type: ignore[operator]


def iterrows_backtest(prices: pd.DataFrame, signals: np.ndarray, settings: BacktestSettings) -> dict[str, float]:
    """The same rules and metrics written the straightforward way: one `iterrows()` step per bar."""
    cost = settings.cost_bps / 10_000.0
    frame = prices.assign(Signal=signals)

    def simulate(column: str) -> tuple[list[float], list[float], list[float], float, float]:
        cash, shares, pending, entry_cash = settings.cash, 0.0, 0.0, 0.0
        equity: list[float] = []
        position: list[float] = []
        trades: list[float] = []
        costs = notional = 0.0
        for _, row in frame.iterrows():
            if settings.fill == Fill.NEXT_OPEN:
                order, price = pending, row["Open"]
            else:
                order, price = row[column], row["Close"]
            if order == 1 and shares == 0:
                entry_cash, shares, cash = cash, cash / (price * (1 + cost)), 0.0
                costs += shares * price * cost
                notional += shares * price
            elif order == -1 and shares > 0:
                cash = shares * price * (1 - cost)
                costs += shares * price * cost
                notional += shares * price
                trades.append(cash / entry_cash - 1)
                shares = 0.0
            pending = row[column]
            equity.append(cash + shares * row["Close"])
            position.append(1.0 if shares > 0 else 0.0)
        if shares > 0:  # still open: sold at the last close, counted as a trade
            last = frame["Close"].iloc[-1]
            costs += shares * last * cost
            notional += shares * last
            equity[-1] = shares * last * (1 - cost)
            trades.append(equity[-1] / entry_cash - 1)
        return equity, position, trades, costs, notional

    equity, position, trades, costs, notional = simulate("Signal")
    frame["Hold"] = 1.0
    hold_equity = simulate("Hold")[0]

    periods = periods_per_year(prices.index)
    years = (prices.index[-1] - prices.index[0]).total_seconds() / 86_400 / 365.25
    curve, hold = pd.Series(equity), pd.Series(hold_equity)
    returns, hold_returns = curve.pct_change().dropna(), hold.pct_change().dropna()

    def sharpe(r: pd.Series) -> float:
        return r.mean() / r.std() * math.sqrt(periods) if len(r) > 1 and r.std() > 1e-12 else 0.0

    downside = math.sqrt((returns.clip(upper=0) ** 2).mean())
    peaks = pd.concat([pd.Series([settings.cash]), curve], ignore_index=True).cummax().iloc[1:]
    drawdown = min(0.0, (curve / peaks.to_numpy() - 1).min())
    total = curve.iloc[-1] / settings.cash - 1
    cagr = (1 + total) ** (1 / years) - 1 if years > 0 else 0.0
    return {
        "total_return": total,
        "cagr": cagr,
        "sharpe": sharpe(returns),
        "sortino": returns.mean() / downside * math.sqrt(periods) if downside > 1e-12 else 0.0,
        "max_drawdown": drawdown,
        "calmar": cagr / -drawdown if drawdown < -1e-12 else 0.0,
        "num_trades": float(len(trades)),
        "win_rate": sum(t > 0 for t in trades) / len(trades) if trades else 0.0,
        "exposure": sum(position) / len(position),
        "turnover": notional / curve.mean() / years if years > 0 else 0.0,
        "total_costs": costs,
        "final_equity": curve.iloc[-1],
        "buy_and_hold_return": hold.iloc[-1] / settings.cash - 1,
        "buy_and_hold_sharpe": sharpe(hold_returns),
        "bars": float(len(curve)),
    }


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls, seconds (one untimed warm-up call first)."""
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def assert_same_metrics(fixture: Fixture, settings: BacktestSettings) -> None:
    """The two engines must agree on every metric before their times mean anything."""
    fast = run_window(fixture.prices, fixture.signals, settings).metrics
    slow = iterrows_backtest(fixture.prices, fixture.signals, settings)
    for key in METRIC_KEYS:
        assert math.isclose(fast[key], slow[key], rel_tol=1e-9, abs_tol=1e-12), (settings, key, fast[key], slow[key])


def bench_engine_vs_iterrows(fixture: Fixture) -> dict[str, float | str]:
    """run_window against the iterrows engine on the whole S&P 500, default settings."""
    settings = BacktestSettings()
    for checked in (settings, SEED_SETTINGS):
        assert_same_metrics(fixture, checked)
    vectorised = median_seconds(lambda: run_window(fixture.prices, fixture.signals, settings), repeats=101)
    per_row = median_seconds(lambda: iterrows_backtest(fixture.prices, fixture.signals, settings), repeats=7)
    return {
        "engine_bars": len(fixture.prices),
        "engine_settings": f"fill={settings.fill} cost_bps={settings.cost_bps}",
        "engine_metrics_match": "yes (next-open 2 bps and close 0 bps, rel 1e-9)",
        "engine_vectorised_ms": round(vectorised * 1e3, 3),
        "engine_iterrows_ms": round(per_row * 1e3, 1),
        "engine_speedup_x": round(per_row / vectorised, 1),
    }


def median_process_seconds(commands: dict[str, list[str]], repeats: int, cwd: Path) -> dict[str, float]:
    """Median wall time of each whole command, run in turn (interleaved, so load hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(repeats + 1):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
            if round_:  # the first round warms the disk cache
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_evaluation_vs_original(fixture: Fixture) -> dict[str, float | str]:
    """One full sandboxed evaluation (vet, isolated runs, look-ahead prefixes, train/val/test simulation)
    against the original harness's whole `python trade.py` on the same data."""
    block = extract_block(baseline_source())
    windows = ("train", "val", "test")
    with SandboxPool() as pool:  # one per command, as `backtest` and the loop hold one
        evaluation = median_seconds(lambda: evaluate_block(block, fixture.data, windows, pool=pool), repeats=21)
    original = median_process_seconds(
        {"original": [sys.executable, str(ORIGINAL), str(fixture.data_dir)]}, 7, fixture.data_dir
    )["original"]
    return {
        "evaluation_ms": round(evaluation * 1e3, 1),
        "original_trade_py_ms": round(original * 1e3, 1),
        "evaluation_to_original_ratio": round(evaluation / original, 3),
    }


# Strategies of the kinds models write, for the look-ahead gate's cost (issue: at most 1.5 s per candidate).
TYPICAL_BLOCKS = {
    "sma_crossover": extract_block(baseline_source()),
    "rsi": """
def generate_features(df):
    delta = df["Close"].diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
    df["RSI"] = 100 - 100 / (1 + gain / loss)
    df["SMA_200"] = df["Close"].rolling(200).mean()
    return df

def strategy_logic(row):
    if row["RSI"] < 40 and row["Close"] > row["SMA_200"]:
        return 1
    if row["RSI"] > 65:
        return -1
    return 0
""",
    "macd_bollinger_volume": """
def generate_features(df):
    close = df["Close"]
    macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    df["MACD"] = macd
    df["MACD_signal"] = macd.ewm(span=9, adjust=False).mean()
    mid = close.rolling(20).mean()
    std = close.rolling(20).std()
    df["BB_upper"] = mid + 2 * std
    df["BB_lower"] = mid - 2 * std
    df["ATR"] = (df["High"] - df["Low"]).rolling(14).mean()
    df["Vol_ratio"] = df["Volume"] / df["Volume"].rolling(50).mean()
    df["Momentum"] = close.pct_change(10)
    return df

def strategy_logic(row):
    if row["MACD"] > row["MACD_signal"] and row["Close"] < row["BB_upper"] and row["Vol_ratio"] > 0.8:
        return 1
    if row["MACD"] < row["MACD_signal"] or row["Close"] > row["BB_upper"]:
        return -1
    return 0
""",
    "breakout_with_trailing_stop": """
def generate_features(df):
    df["High_55"] = df["High"].rolling(55).max().shift(1)
    df["Low_20"] = df["Low"].rolling(20).min().shift(1)
    df["Trend"] = df["Close"].ewm(span=100).mean()
    return df

STATE = {"peak": 0.0, "long": False}

def strategy_logic(row):
    if not STATE["long"] and row["Close"] > row["High_55"] and row["Close"] > row["Trend"]:
        STATE["long"], STATE["peak"] = True, row["Close"]
        return 1
    if STATE["long"]:
        STATE["peak"] = max(STATE["peak"], row["Close"])
        if row["Close"] < row["Low_20"] or row["Close"] < 0.9 * STATE["peak"]:
            STATE["long"] = False
            return -1
    return 0
""",
}
GATE_TARGET_S = 1.5
# The original `python trade.py` took 0.388 s on the machine where the 1.5 s target was set (the sandbox
# issue's benchmark run). These shared machines' speed drifts by 2x between hours, so the gate is also timed
# against the original harness run in the same rounds, and the target read as that ratio.
REFERENCE_ORIGINAL_S = 0.388


def bench_lookahead_gate(fixture: Fixture) -> dict[str, float | str]:
    """The whole evaluation (full run plus the look-ahead gate's prefixes) of typical strategies on train and
    validation, per strategy, interleaved with the original harness's `python trade.py` so machine speed hits
    all alike; the gate's cuts; the slowest against the 1.5 s target, absolute and as a ratio to the original."""
    original_command = [sys.executable, str(ORIGINAL), str(fixture.data_dir)]
    times: dict[str, list[float]] = {name: [] for name in ("original", *TYPICAL_BLOCKS)}
    cuts: dict[str, int] = {}
    with SandboxPool() as pool:  # the run's one pool: its server starts in the warm-up round
        for round_ in range(6):  # the first round warms up and is not counted
            start = time.perf_counter()
            subprocess.run(original_command, cwd=fixture.data_dir, check=True, stdout=subprocess.DEVNULL)
            elapsed = {"original": time.perf_counter() - start}
            for name, block in TYPICAL_BLOCKS.items():
                start = time.perf_counter()
                evaluation = evaluate_block(block, fixture.data, pool=pool)
                elapsed[name] = time.perf_counter() - start
                assert evaluation.ok, (name, evaluation.message)
                cuts[name] = int(evaluation.timings["gate_cuts"])
            if round_:
                for name, seconds in elapsed.items():
                    times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    original = medians.pop("original")
    results: dict[str, float | str] = {"gate_original_trade_py_s": round(original, 3)}
    for name, seconds in medians.items():
        results[f"gate_{name}_s"] = round(seconds, 3)
        results[f"gate_{name}_cuts"] = cuts[name]
        results[f"gate_{name}_to_original_ratio"] = round(seconds / original, 3)
    slowest = max(medians.values())
    target_ratio = GATE_TARGET_S / REFERENCE_ORIGINAL_S
    results |= {
        "gate_slowest_s": round(slowest, 3),
        "gate_slowest_to_target_ratio": round(slowest / GATE_TARGET_S, 3),
        "gate_slowest_to_original_ratio": round(slowest / original, 3),
        "gate_target_to_original_ratio": round(target_ratio, 3),
        "gate_slowest_at_reference_speed_s": round(slowest / original * REFERENCE_ORIGINAL_S, 3),
    }
    return results


@contextlib.contextmanager
def package_bytecode() -> Iterator[None]:
    """The autotrade package's bytecode compiled, as `pip install` leaves it; what this created is removed after.

    This environment sets PYTHONDONTWRITEBYTECODE=1, so without it every process recompiles the
    ~20 autotrade modules it imports (~30-40 ms of CPU); pandas and numpy are compiled either way.
    """
    package = Path(autotrade.__file__).parent
    created = [d for d in (package, *(p for p in package.iterdir() if p.is_dir())) if not (d / "__pycache__").exists()]
    compileall.compile_dir(str(package), quiet=1)
    try:
        yield
    finally:
        for directory in created:
            shutil.rmtree(directory / "__pycache__", ignore_errors=True)


def bench_backtest_command(fixture: Fixture) -> dict[str, float | str]:
    """The whole `autotrade backtest` and standalone `python trade.py` processes against the original harness's.

    Timed as this environment runs them, then with the package's bytecode compiled (`_compiled`).
    """
    autotrade_script = str(Path(sys.executable).with_name("autotrade"))
    workdir = fixture.data_dir.parent  # trade.py finds data/ here
    (workdir / "trade.py").write_text(baseline_source())
    commands = {
        "backtest": [autotrade_script, "backtest", "--data", str(fixture.data_dir)],
        "trade_py": [sys.executable, "trade.py"],
        "original": [sys.executable, str(ORIGINAL), str(fixture.data_dir)],
    }
    cached = any((Path(autotrade.__file__).parent / "__pycache__").glob("*.pyc"))
    results: dict[str, float | str] = {"package_bytecode_as_found": "cached" if cached else "not cached"}
    for suffix in ("", "_compiled"):
        with package_bytecode() if suffix else contextlib.nullcontext():
            medians = median_process_seconds(commands, repeats=7, cwd=workdir)
        original = medians["original"]
        results |= {
            f"backtest_command{suffix}_ms": round(medians["backtest"] * 1e3, 1),
            f"trade_py_process{suffix}_ms": round(medians["trade_py"] * 1e3, 1),
            f"original_trade_py_process{suffix}_ms": round(original * 1e3, 1),
            f"backtest_to_original_ratio{suffix}": round(medians["backtest"] / original, 3),
            f"trade_py_to_original_ratio{suffix}": round(medians["trade_py"] / original, 3),
        }
    return results


# The one-shot rule (issue 11): `autotrade backtest` may take at most this multiple of the original `python trade.py`.
BACKTEST_STARTUP_LIMIT = 1.3


def bench_backtest_startup(fixture: Fixture) -> dict[str, float | str]:
    """`autotrade backtest` on the default trade.py against the original harness, side by side in one run.

    Both in a directory prepared with `autotrade prepare --offline`, alternating (7 rounds after an untimed
    one, so machine load hits both alike); medians, their ratio, and the limit it is held to.
    """
    workdir = fixture.data_dir.parent
    (workdir / "trade.py").write_text(baseline_source())
    medians = median_process_seconds(
        {
            "original": [sys.executable, str(ORIGINAL), str(fixture.data_dir)],
            "backtest": [str(Path(sys.executable).with_name("autotrade")), "backtest", "trade.py"],
        },
        repeats=7,
        cwd=workdir,
    )
    ratio = medians["backtest"] / medians["original"]
    return {
        "backtest_startup_original_ms": round(medians["original"] * 1e3, 1),
        "backtest_startup_backtest_ms": round(medians["backtest"] * 1e3, 1),
        "backtest_startup_ratio": round(ratio, 3),
        "backtest_startup_limit": BACKTEST_STARTUP_LIMIT,
        "backtest_startup_within_limit": "yes" if ratio <= BACKTEST_STARTUP_LIMIT else "no",
    }


BENCHMARKS: list[Callable[[Fixture], dict[str, float | str]]] = [
    bench_engine_vs_iterrows,
    bench_evaluation_vs_original,
    bench_lookahead_gate,
    bench_backtest_command,
    bench_backtest_startup,
]


def main() -> None:
    """Run every benchmark (or those named on the command line) and print one `key: value` line per result."""
    only = set(sys.argv[1:])
    print(f"cores: {os.cpu_count()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        prepare_data(offline=True, data_dir=data_dir)
        prices = load_bundled("sp500")
        fixture = Fixture(prices, baseline_signals(prices), data_dir, load_prepared(data_dir))
        for benchmark in BENCHMARKS if not only else [b for b in BENCHMARKS if b.__name__ in only]:
            for key, value in benchmark(fixture).items():
                print(f"{key}: {value}", flush=True)


if __name__ == "__main__":
    main()
