"""The fixed metric: evaluate a block (vet, sandboxed run, look-ahead gate, backtest), objectives and score.

`from autotrade.evaluation import run_trade_py` is the guard line of every trade.py the product has
written, so that name stays importable from here. It loads on first use (PEP 562): `--help` reads the objective
registry in this package and must not pull the evaluation stack (numpy, pandas) in with it.
"""

from typing import Any

__all__ = ["run_trade_py"]


def __getattr__(name: str) -> Any:
    """``run_trade_py``, imported when first asked for."""
    if name == "run_trade_py":
        from autotrade.evaluation.evaluate import run_trade_py

        return run_trade_py
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
