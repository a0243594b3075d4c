"""val_sharpe: the validation window's annualised Sharpe ratio."""

from autotrade.evaluation.objectives.base import ValidationMetric

OBJECTIVE = ValidationMetric(
    name="val_sharpe",
    metric="sharpe",
    sentence="the annualised Sharpe ratio of the validation window (higher is better)",
)
