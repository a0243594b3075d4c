"""What the loop maximises: one module per objective behind ``base.Objective``, and the registry that names them.

Adding an objective is a module here (an object satisfying ``Objective``) and one line in ``OBJECTIVES``: the
CLI's ``--objective`` choices and help, the run settings' check, the prompt, the score and every table read it
from here. This package imports no numpy: ``--help`` reads the registry, ``OBJECTIVES.get`` loads the module.

Inputs are evaluations (``evaluation.Evaluation``) whose ``windows`` are ``{"train": metrics, "val": metrics}``
with the engine's keys: total_return, cagr, sharpe (annualised), sortino, max_drawdown (negative fraction),
calmar, num_trades, win_rate, exposure (0..1), turnover, total_costs, final_equity, buy_and_hold_return,
buy_and_hold_sharpe, bars.
"""

from __future__ import annotations

from autotrade.evaluation.objectives.base import Objective
from autotrade.fmt import num
from autotrade.registry import Entry, Registry

OBJECTIVES: Registry[Objective] = Registry(
    "objective",
    {
        "val_return": Entry("total return of the validation window", f"{__name__}.val_return:OBJECTIVE"),
        "val_sharpe": Entry("annualised Sharpe of the validation window", f"{__name__}.val_sharpe:OBJECTIVE"),
        "robust": Entry(
            "worst Sharpe over --robust-k sub-windows of train + validation", f"{__name__}.robust:OBJECTIVE"
        ),
        "rubric": Entry(
            "TradePool-style score in [0, 1] with hard gates; weights and mappings: rubric_score in "
            "autotrade/evaluation/objectives/rubric.py",
            f"{__name__}.rubric:OBJECTIVE",
        ),
        "composite": Entry(
            "the seed's training reward, 0.3 x compile (0 or -1) + 0.7 x performance (validation Sharpe squashed "
            "into (-1, 1)); -0.7 for a failed check",
            f"{__name__}.composite:OBJECTIVE",
        ),
    },
)
DEFAULT_OBJECTIVE = "val_return"  # the original harness's figure
DEFAULT_ROBUST_K = 4  # sub-windows of train + validation for the robust objective


def format_score(objective: str, value: float | None, missing: str = "—") -> str:
    """A value of ``objective`` as people and models read it; as a plain number when the objective is unknown.

    Unknown names come from run directories written with an objective this version no longer has.
    """
    if objective in OBJECTIVES.entries:
        return OBJECTIVES.get(objective).format(value, missing)
    return num(value, 3, missing)


def has_own_column(objective: str) -> bool:
    """Whether tables show ``objective`` in a column of its own: yes, unless it is one they show already."""
    return objective not in OBJECTIVES.entries or OBJECTIVES.get(objective).own_column
