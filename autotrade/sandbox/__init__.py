"""Isolation of model-written code: static vetting, the sandboxed child runtime and the layers around it.

- vet.vet_block: static AST vetting, the first layer.
- worker.run_candidate: run a block on a frame and its prefixes in sandboxed child processes.
- layers.active_layers: which isolation layers hold on this machine (for `autotrade doctor`).
- oneshot: how `autotrade backtest` and `python trade.py` start (and end) fast.
"""
