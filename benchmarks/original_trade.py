"""The original harness's `python trade.py`, reproduced as the speed reference for the benchmarks.

What the seed project ran: load the CSV with pandas, compute features on the whole frame, call
strategy_logic on every `iterrows()` row, fill at that bar's close with no costs, and print
`train_return` / `val_return`. It trusts whatever the strategy does (no vetting, no sandbox,
no look-ahead check). Usage: `python benchmarks/original_trade.py DATA_DIR`.
"""

import json
import sys
from pathlib import Path

import pandas as pd


def generate_features(df):
    df["SMA_20"] = df["Close"].rolling(window=20).mean()
    df["SMA_50"] = df["Close"].rolling(window=50).mean()
    return df


def strategy_logic(row):
    if row["SMA_20"] > row["SMA_50"]:
        return 1
    if row["SMA_20"] < row["SMA_50"]:
        return -1
    return 0


def backtest(df, cash=10_000.0):
    """Per-row long-or-flat loop at the same bar's close; returns the total return."""
    shares = 0.0
    for _, row in df.iterrows():
        signal = strategy_logic(row)
        if signal == 1 and shares == 0:
            shares, cash = cash / row["Close"], 0.0
        elif signal == -1 and shares > 0:
            cash, shares = shares * row["Close"], 0.0
    return (cash + shares * df["Close"].iloc[-1]) / 10_000.0 - 1


def main(data_dir: Path) -> None:
    meta = json.loads((data_dir / "meta.json").read_text())
    df = pd.read_csv(data_dir / meta["file"], index_col="Date", parse_dates=True)
    df = generate_features(df)
    val_start = meta["splits"]["val_start"]
    test_start = meta["splits"]["test_start"]
    print(f"train_return: {backtest(df[df.index < val_start]):.6f}")
    print(f"val_return: {backtest(df[(df.index >= val_start) & (df.index < test_start)]):.6f}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data"))
