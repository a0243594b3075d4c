"""val_return: the validation window's total return, the original harness's objective."""

from autotrade.evaluation.objectives.base import ValidationMetric

OBJECTIVE = ValidationMetric(
    name="val_return",
    metric="total_return",
    sentence="the total return of the validation window (higher is better)",
    as_percent=True,
    own_column=False,  # every table shows the val return already
)
