"""Safe, honest evaluation of model-written blocks: isolated workers and the look-ahead gate.

- worker.run_candidate: run a block on a frame and its prefixes in sandboxed child processes.
- lookahead.check_lookahead / cut_points / seed_for: the causality gate.
- layers.active_layers: which isolation layers hold on this machine (for `autotrade doctor`).
- vet.vet_block (separate module): static AST vetting, the first layer.
- oneshot: how `autotrade backtest` and `python trade.py` start (and end) fast.

The names below are loaded on first use, so that the CLI's first line, which imports
`autotrade.sandbox.oneshot`, does not import pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .layers import active_layers
    from .lookahead import check_lookahead, cut_points, seed_for
    from .worker import CandidateOutput, Limits, RunResult, run_candidate

_HOMES = {"active_layers": "layers", "check_lookahead": "lookahead", "cut_points": "lookahead",
          "seed_for": "lookahead", "CandidateOutput": "worker", "Limits": "worker", "RunResult": "worker",
          "run_candidate": "worker"}

__all__ = ["CandidateOutput", "Limits", "RunResult", "active_layers", "check_lookahead", "cut_points",
           "run_candidate", "seed_for"]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` on first access (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
