"""The trade.py contract, stated once: what a candidate block is, what it is given, and what it must return.

A trade.py holds the agent block between two delimiter lines, with the guard line just above the start; the block
defines ``generate_features(df)`` (the OHLCV frame in, the frame with feature columns added out) and
``strategy_logic(row)`` (one bar in, a signal out: 1 buy, -1 sell, 0 hold), using only numpy as np, pandas as pd
and math. The harness — candidate, vet, the sandbox's executor and audit hook, reply parsing, the prompt and the
data — reads each of these from here; templates/trade.py and templates/program.md restate them for people and the
model. Statuses live in ``autotrade.status``.
"""

from __future__ import annotations

from collections.abc import Mapping

# The original harness's markers, so its users' files keep working.
BLOCK_START = "# --- THESE ARE THE FUNCTIONS THE AGENT SHOULD MODIFY ---"
BLOCK_END = "# -----------------------------------------------------------"
# The line just above BLOCK_START in every trade.py the product writes: `python trade.py` hands the file to the
# sandbox, an import is refused, so the block never runs in the user's own process.
GUARD_FUNCTION = "run_trade_py"  # importable from autotrade.evaluation for as long as such files exist
GUARD = (
    f"from autotrade.evaluation import {GUARD_FUNCTION}; {GUARD_FUNCTION}(__name__, __file__)"
    "  # the block below runs only in the sandbox"
)

FEATURES = "generate_features"  # generate_features(df): the frame with feature columns added
STRATEGY = "strategy_logic"  # strategy_logic(row): one bar's signal
FUNCTIONS: Mapping[str, str] = {FEATURES: "df", STRATEGY: "row"}  # each entry point and its one parameter
SIGNATURES = " and ".join(f"{name}({param})" for name, param in FUNCTIONS.items())  # for messages

# The names the block is given, and the module each stands for; `import numpy` / `import pandas` may also bind the
# long names. Nothing else may be imported.
MODULES: Mapping[str, str] = {"pd": "pandas", "np": "numpy", "math": "math"}
ALLOWED_MODULES = tuple(dict.fromkeys(MODULES.values()))  # ("pandas", "numpy", "math")

OHLCV_COLUMNS = ("Open", "High", "Low", "Close", "Volume")  # the columns every frame the block sees has

BUY, SELL, HOLD = 1, -1, 0  # what strategy_logic returns; None and NaN also mean hold
SIGNALS = frozenset({BUY, SELL, HOLD})
