"""Safe, honest evaluation of model-written blocks: isolated workers and the look-ahead gate.

- worker.run_candidate: run a block on a frame and its prefixes in sandboxed child processes.
- lookahead.check_lookahead / cut_points / seed_for: the causality gate.
- layers.active_layers: which isolation layers hold on this machine (for `autotrade doctor`).
- vet.vet_block (separate module): static AST vetting, the first layer.
"""

from .layers import active_layers
from .lookahead import check_lookahead, cut_points, seed_for
from .worker import CandidateOutput, Limits, RunResult, run_candidate

__all__ = ["CandidateOutput", "Limits", "RunResult", "active_layers", "check_lookahead", "cut_points",
           "run_candidate", "seed_for"]
