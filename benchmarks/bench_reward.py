"""The training reward's throughput: completions scored one at a time against a batch scored in parallel.

A GRPO step scores every generation of its batch before the next step can start, so the reward's wall time per
batch is time the GPU waits. On the bundled S&P 500 (its registered split, research windows only), a batch of
random-policy replies is scored twice per round, in turn: by `reward_function(..., workers=1)` and by one with
`workers` = the cores (the default). Prints `key: value` lines; `reward_parallel_speedup_x` is the ratio measured
side by side, median of the rounds.

    python benchmarks/bench_reward.py [--batch 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from autotrade.data.prepared import prepare_data
from autotrade.propose.policies.random_search import random_strategy
from autotrade.rl import reward_function


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(1)
    completions = [random_strategy(rng).reply() for _ in range(args.batch)]
    with tempfile.TemporaryDirectory() as folder:
        data = prepare_data(ticker="sp500", offline=True, data_dir=Path(folder) / "data")
        with reward_function(data, workers=1) as serial, reward_function(data) as parallel:
            serial(completions=completions[:2])  # start each sandbox's fork server before timing
            parallel(completions=completions[:2])
            times: dict[str, list[float]] = {"serial": [], "parallel": []}
            for _ in range(args.rounds):
                for name, reward in (("serial", serial), ("parallel", parallel)):
                    started = time.perf_counter()
                    rewards = reward(completions=completions)
                    times[name].append(time.perf_counter() - started)
                    assert len(rewards) == args.batch
            statuses = sorted({score.status for score in parallel.last})
    serial_s, parallel_s = statistics.median(times["serial"]), statistics.median(times["parallel"])
    print(f"reward_batch: {args.batch}")
    print(f"reward_cores: {os.cpu_count()}")
    print(f"reward_statuses: {','.join(statuses)}")
    print(f"reward_serial_batch_s: {serial_s:.2f}")
    print(f"reward_parallel_batch_s: {parallel_s:.2f}")
    print(f"reward_parallel_per_completion_s: {parallel_s / args.batch:.3f}")
    print(f"reward_parallel_speedup_x: {serial_s / parallel_s:.2f}")


if __name__ == "__main__":
    main()
