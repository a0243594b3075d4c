"""Throughput of the research loop against a loopback model server: `python benchmarks/bench_loop.py [names]`.

Prints `key: value` lines, like bench_engine.py. The server is the test suite's scripted OpenAI-compatible one
(tests/openai_server.py), answering over real HTTP with a reply per iteration, so every run gets the same replies.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from openai_server import OpenAIServer, Recorded, Reply, Slow  # noqa: E402 - the tests folder is on the path now
from recording import RecordingReporter  # noqa: E402

from autotrade.data.prepared import prepare_data  # noqa: E402
from autotrade.data.sources import load_bundled  # noqa: E402
from autotrade.propose.prompts import load_prompt_files  # noqa: E402
from autotrade.research.config import RunSettings, model_settings  # noqa: E402
from autotrade.research.loop import start_run  # noqa: E402

LATENCY_S = 2.0  # the loopback latency for --parallel
PROPOSALS = 24  # model iterations per run, after the baseline: three rounds of --parallel 8
# The version before this changes, for the harness-overhead comparison (override with AUTOTRADE_BENCH_REF).
REFERENCE = os.environ.get("AUTOTRADE_BENCH_REF", "05c753a")


def strategy(i: int) -> str:
    """A distinct, causal moving-average crossover reply for iteration i."""
    fast, slow = 3 + i % 17, 30 + 7 * i
    block = (
        "def generate_features(df):\n"
        f"    df['fast'] = df['Close'].rolling({fast}).mean()\n"
        f"    df['slow'] = df['Close'].rolling({slow}).mean()\n"
        "    return df\n\n\n"
        "def strategy_logic(row):\n"
        "    return 1 if row['fast'] > row['slow'] else -1\n"
    )
    return f"```python\n{block}```\n\n```markdown\nSMA {fast}/{slow}\n```\n"


def iteration_of(request: Recorded) -> int:
    content = request.body["messages"][-1]["content"]
    return int(content.split("# Iteration ", 1)[1].split()[0].strip(":"))


NO_CODE = "I would try a volatility filter next, but I have no code for it yet."


def run_once(
    data_dir: Path, root: Path, latency_s: float, parallel: int, name: str, code: bool = True
) -> dict[str, float]:
    """One run of 1 + PROPOSALS iterations against a server that takes `latency_s` per reply (concurrently);
    `code=False`: every reply holds no code, so nothing is evaluated after the baseline."""

    def reply(request: Recorded) -> Reply | Slow:
        answer = Reply(strategy(iteration_of(request)) if code else NO_CODE)
        return Slow(latency_s, answer) if latency_s > 0 else answer

    with OpenAIServer() as server:
        server.default = reply
        endpoint = model_settings(base_url=server.base_url, environ={"OPENAI_API_KEY": "bench"})
        # `parallel` only when asked for: the reference version of the overhead benchmark has no such setting.
        wide = {"parallel": parallel} if parallel != 1 else {}
        settings = RunSettings(max_iter=1 + PROPOSALS, max_fails=1000, seed=1, data_dir=str(data_dir), **wide)
        began = time.perf_counter()
        result = start_run(
            settings, endpoint, RecordingReporter(), prompts=load_prompt_files(root), name=name, root=root / "train"
        )
        wall = time.perf_counter() - began
    records = [json.loads(p.read_text()) for p in (root / "train" / name).glob("iter_*_results.json")]
    return {
        "wall_s": wall,
        "iterations": float(result.iterations),
        "eval_s": sum(r["eval_s"] for r in records),
        "blocks": float(len({r["block"] for r in records})),
    }


def data_dirs(tmp: Path) -> dict[str, Path]:
    """The bundled S&P 500 as `autotrade prepare --offline` leaves it, and its last five years (faster to evaluate)."""
    full = tmp / "full"
    prepare_data(offline=True, data_dir=full)
    frame = load_bundled("sp500")
    frame[frame.index >= "2014-01-01"].to_csv(tmp / "five_years.csv")
    five = tmp / "five"
    prepare_data(csv=tmp / "five_years.csv", data_dir=five, val_start="2017-01-01", test_start="2018-01-01")
    return {"full": full, "five_years": five}


def bench_parallel_throughput(tmp: Path) -> dict[str, float | str]:
    """--parallel 8 against --parallel 1, 2 s per reply, served concurrently: iterations per minute and their ratio.

    Both arms get the same replies and run the same length; run in turn (1, 8, 1, 8). Three arms: strategies
    evaluated on the bundled data and on its last five years (the evaluation, mostly the look-ahead gate's
    children, is CPU work, so on few cores it bounds the speed-up), and replies without code (nothing to
    evaluate: the loop's own concurrency).
    """
    results: dict[str, float | str] = {"parallel_latency_s": LATENCY_S, "parallel_proposals": PROPOSALS}
    dirs = data_dirs(tmp)
    arms = [("full", dirs["full"], True), ("five_years", dirs["five_years"], True), ("no_code", dirs["full"], False)]
    for label, data_dir, code in arms:
        rates: dict[int, list[float]] = {1: [], 8: []}
        eval_s: list[float] = []
        shapes: set[tuple[float, float]] = set()
        for round_ in range(2):
            for parallel in (1, 8):
                figures = run_once(data_dir, tmp, LATENCY_S, parallel, f"{label}-p{parallel}-{round_}", code)
                rates[parallel].append(figures["iterations"] / figures["wall_s"] * 60)
                shapes.add((figures["iterations"], figures["blocks"]))
                if parallel == 1:
                    eval_s.append(figures["eval_s"] / figures["iterations"])
        one, eight = statistics.median(rates[1]), statistics.median(rates[8])
        results |= {
            f"parallel_{label}_p1_iterations_per_min": round(one, 1),
            f"parallel_{label}_p8_iterations_per_min": round(eight, 1),
            f"parallel_{label}_speedup_x": round(eight / one, 2),
            f"parallel_{label}_p1_eval_s_per_iteration": round(statistics.median(eval_s), 3),
            f"parallel_{label}_same_run_length": "yes" if len(shapes) == 1 else f"no: {sorted(shapes)}",
        }
    results["parallel_target_x"] = 6.0
    return results


OVERHEAD_DRIVER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from bench_loop import run_once
from pathlib import Path
import autotrade
figures = run_once(Path(sys.argv[2]), Path(sys.argv[3]), 0.0, 1, sys.argv[4])
print(json.dumps({**figures, "package": autotrade.__file__}))
"""


def bench_harness_overhead(tmp: Path) -> dict[str, float | str]:
    """Wall time per iteration with a zero-latency server, this version against REFERENCE, side by side.

    The reference version's package is exported from git into a temporary folder and run in a subprocess
    with it first on the path (same interpreter, same server, same replies); the two alternate, 3 rounds each.
    """
    reference = tmp / "reference"
    reference.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", REFERENCE, "autotrade"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(reference)], input=archive, check=True)
    data_dir = data_dirs(tmp)["full"]
    per_iteration: dict[str, list[float]] = {"current": [], "reference": []}
    outside_eval: dict[str, list[float]] = {"current": [], "reference": []}
    for round_ in range(3):
        for arm, package_root in (("reference", reference), ("current", REPO)):
            env = {**os.environ, "PYTHONPATH": f"{package_root}{os.pathsep}{REPO / 'tests'}"}
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    OVERHEAD_DRIVER,
                    str(REPO / "benchmarks"),
                    str(data_dir),
                    str(tmp),
                    f"{arm}-{round_}",
                ],
                env=env,
                cwd=tmp,  # not the checkout: `python -c` puts the working directory first on the path
                check=True,
                capture_output=True,
                text=True,
            )
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            assert figures["package"].startswith(str(package_root)), figures["package"]
            per_iteration[arm].append(figures["wall_s"] / figures["iterations"])
            outside_eval[arm].append((figures["wall_s"] - figures["eval_s"]) / figures["iterations"])
    current, old = statistics.median(per_iteration["current"]), statistics.median(per_iteration["reference"])
    current_out, old_out = statistics.median(outside_eval["current"]), statistics.median(outside_eval["reference"])
    return {
        "overhead_reference": REFERENCE,
        "overhead_current_s_per_iteration": round(current, 3),
        "overhead_reference_s_per_iteration": round(old, 3),
        "overhead_ratio": round(current / old, 3),
        "overhead_current_outside_eval_s_per_iteration": round(current_out, 3),
        "overhead_reference_outside_eval_s_per_iteration": round(old_out, 3),
        "overhead_outside_eval_ratio": round(current_out / old_out, 3),
    }


BENCHMARKS: list[Callable[[Path], dict[str, float | str]]] = [bench_parallel_throughput, bench_harness_overhead]


def main() -> None:
    """Run every benchmark (or those named on the command line) and print one `key: value` line per result."""
    only = set(sys.argv[1:])
    print(f"cores: {os.cpu_count()}", flush=True)
    for benchmark in BENCHMARKS if not only else [b for b in BENCHMARKS if b.__name__ in only]:
        with tempfile.TemporaryDirectory() as tmp:
            for key, value in benchmark(Path(tmp)).items():
                print(f"{key}: {value}", flush=True)


if __name__ == "__main__":
    main()
