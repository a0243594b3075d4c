"""Single-window against walk-forward selection: what the best strategy found does on the held-out test window.

For each seed, two `--policy random` runs of the same length on the bundled S&P 500: one ranked on the prepared
validation window (2013-2015), one on the worst of `--folds` walk-forward folds of 1999-2015. Then `report`
reveals each run's best on the untouched test window (2016-2018). Prints `key: value` lines per run and the
means; a measurement, not a target (the random policy is no model, and a handful of seeds is little evidence).

    python benchmarks/bench_walkforward.py [--iterations 30] [--seeds 1,2,3] [--folds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def autotrade(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "autotrade.cli.app", *args], cwd=cwd, check=True, capture_output=True)


def best_test(cwd: Path, name: str) -> tuple[float | None, float | None, float | None]:
    """The run's best: the validation return it was chosen by (worst fold under --folds), its test return and Sharpe."""
    autotrade("report", name, cwd=cwd)
    report = json.loads((cwd / "train" / name / "report.json").read_text())
    summary = report["summary"]
    return summary.get("best_val_return"), summary.get("best_test_return"), summary.get("best_test_sharpe")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"single": [], "walkforward": []}
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        autotrade("prepare", "--offline", cwd=cwd)
        for seed in args.seeds.split(","):
            for mode, extra in (("single", []), ("walkforward", ["--folds", str(args.folds)])):
                name = f"{mode}-{seed}"
                autotrade(
                    "run", "--policy", "random", "--max-iter", str(args.iterations), "--seed", seed,
                    "--name", name, "--quiet", *extra, cwd=cwd,
                )  # fmt: skip
                objective, test_return, test_sharpe = best_test(cwd, name)
                print(f"{name}_best_val_return: {objective}")
                print(f"{name}_best_test_return: {test_return}")
                print(f"{name}_best_test_sharpe: {test_sharpe}")
                if test_return is not None:
                    results[mode].append(test_return)
    for mode, values in results.items():
        if values:
            print(f"{mode}_mean_best_test_return: {statistics.mean(values):.4f} over {len(values)} seeds")


if __name__ == "__main__":
    main()
