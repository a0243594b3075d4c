"""A trading strategy for autotrade.

The model edits only the block between the two delimiter lines: generate_features(df)
adds indicator columns to the daily OHLCV frame (Open, High, Low, Close, Volume, and
Adj Close when present), and strategy_logic(row) turns one row into a signal:
1 = buy (go long with all cash), -1 = sell (go flat), 0 = hold. Run `python trade.py`
to backtest this file on the prepared data (`autotrade prepare` first).
"""

import math

import numpy as np
import pandas as pd

# --- THESE ARE THE FUNCTIONS THE AGENT SHOULD MODIFY ---
def generate_features(df):
    """Add the 20- and 50-day simple moving averages of the close."""
    df["SMA_20"] = df["Close"].rolling(window=20).mean()
    df["SMA_50"] = df["Close"].rolling(window=50).mean()
    return df


def strategy_logic(row):
    """Long while the fast average is above the slow one, flat otherwise."""
    if row["SMA_20"] > row["SMA_50"]:
        return 1
    if row["SMA_20"] < row["SMA_50"]:
        return -1
    return 0
# -----------------------------------------------------------


if __name__ == "__main__":
    from autotrade.evaluation import print_trade_py_results

    print_trade_py_results(__file__)
