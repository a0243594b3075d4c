"""The fixed metric: evaluate a block (vet, sandboxed run, look-ahead gate, backtest), objectives and score.

`from autotrade.evaluation import run_trade_py` is the guard line of every trade.py the product has
written, so that name stays importable from here.
"""

from autotrade.evaluation.evaluate import run_trade_py

__all__ = ["run_trade_py"]
