"""A trading strategy for autotrade.

The model edits only the block between the two delimiter lines: generate_features(df)
adds indicator columns to the daily OHLCV frame (Open, High, Low, Close, Volume, and
Adj Close when present), and strategy_logic(row) turns one row into a signal:
1 = buy (go long with all cash), -1 = sell (go flat), 0 = hold. Run `python trade.py`
to backtest this file on the prepared data (`autotrade prepare` first).

The line just above the block hands this file to autotrade's sandbox before the block is
reached: running it evaluates the block there, importing it is refused, and the block's code
never runs in your own Python process.
"""

import math

import numpy as np
import pandas as pd

from autotrade.evaluation import run_trade_py; run_trade_py(__name__, __file__)  # the block below runs only in the sandbox
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
