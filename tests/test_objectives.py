"""Objectives on constructed metrics and equity curves: the rubric's gates and component mappings; the registry."""

from __future__ import annotations

import math
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from test_loop import records

from autotrade.evaluation.evaluate import Evaluation
from autotrade.evaluation.objectives import DEFAULT_OBJECTIVE, OBJECTIVES, format_score, has_own_column
from autotrade.evaluation.objectives.base import ValidationMetric
from autotrade.evaluation.objectives.robust import concat_bar_returns, robust_sharpe, sub_window_sharpes
from autotrade.evaluation.objectives.rubric import RUBRIC_WEIGHTS, STATUSES, rubric_score
from autotrade.evaluation.score import score_evaluation
from autotrade.status import Status


def _metrics(**overrides: float) -> dict[str, float]:
    """Validation metrics of a decent strategy: every rubric component at 1 except where overridden."""
    base = {
        "total_return": 0.30,
        "cagr": 0.09,
        "sharpe": 2.5,
        "sortino": 3.0,
        "max_drawdown": 0.0,
        "calmar": 0.0,
        "num_trades": 12.0,
        "win_rate": 0.6,
        "exposure": 0.6,
        "turnover": 4.0,
        "total_costs": 0.0,
        "final_equity": 13_000.0,
        "buy_and_hold_return": 0.25,
        "buy_and_hold_sharpe": 0.8,
        "bars": 750.0,
    }
    return base | overrides


def value(objective: str, windows: dict[str, dict[str, float]], status: str = "ok") -> float:
    """The total an evaluation with these metrics scores under the objective (its gated value when it fails)."""
    return score_evaluation(Evaluation(Status(status), windows=windows), objective).total


def _regimes(means: list[float], bars: int = 250, seed: int = 0) -> np.ndarray:
    """Per-bar returns: consecutive regimes of `bars` bars each with the given mean and 1% daily noise."""
    rng = np.random.default_rng(seed)
    return np.concatenate([mean + rng.normal(0.0, 0.01, bars) for mean in means])


def test_default_objective_is_validation_return_as_the_original() -> None:
    assert DEFAULT_OBJECTIVE == "val_return"
    assert OBJECTIVES.names() == ("val_return", "val_sharpe", "robust", "rubric", "composite")


def test_val_return_and_val_sharpe_read_the_validation_window() -> None:
    windows = {"train": _metrics(total_return=9.0, sharpe=9.0), "val": _metrics(total_return=0.12, sharpe=0.7)}
    assert value("val_return", windows) == 0.12
    assert value("val_sharpe", windows) == 0.7


def test_non_finite_metric_never_ranks() -> None:
    assert value("val_sharpe", {"val": _metrics(sharpe=math.nan)}) == -math.inf


def test_missing_validation_window_never_ranks() -> None:
    assert value("val_return", {"train": _metrics()}) == -math.inf


def test_unknown_objective_is_rejected_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown objective 'val_sortino'; choose one of val_return, val_sharpe"):
        OBJECTIVES.get("val_sortino")


def test_robust_picks_the_worst_regime() -> None:
    # Four regimes of 250 bars; the third loses. Its Sharpe (about -0.001 / 0.01 * sqrt(252) = -1.6) is the answer.
    returns = _regimes([0.001, 0.001, -0.001, 0.001])
    third = returns[500:750]
    expected = third.mean() / third.std(ddof=1) * math.sqrt(252)
    assert robust_sharpe(returns, k=4) == pytest.approx(expected)
    assert expected < -1.0


def test_robust_prefers_the_strategy_that_works_in_every_regime() -> None:
    steady = _regimes([0.002] * 4, seed=1)  # Sharpe about 3 in every regime
    one_boom = _regimes([0.012, 0.0, -0.002, 0.0], seed=1)  # higher total return, but loses in the third regime
    assert one_boom.sum() > steady.sum()
    assert robust_sharpe(steady) > 1.0
    assert robust_sharpe(one_boom) < -1.0


def test_robust_scores_a_flat_regime_zero() -> None:
    returns = _regimes([0.001, 0.001, 0.001, 0.001])
    returns[250:500] = 0.0  # out of the market for a whole regime
    assert robust_sharpe(returns, k=4) == 0.0


def test_robust_uses_near_equal_consecutive_sub_windows() -> None:
    # 10 returns, k=3 -> sub-windows of 4, 3, 3 bars; only the last is negative on average.
    returns = np.array([0.01, 0.02, 0.01, 0.02, 0.01, 0.03, 0.02, -0.01, -0.02, 0.0])
    last = returns[7:]
    assert robust_sharpe(returns, k=3, periods_per_year=1.0) == pytest.approx(last.mean() / last.std(ddof=1))


def test_robust_drops_window_leading_nans_and_rejects_short_series() -> None:
    returns = _regimes([0.001, -0.001])
    with_nans = np.concatenate([[np.nan], returns[:250], [np.nan], returns[250:]])
    assert robust_sharpe(with_nans, k=2) == pytest.approx(robust_sharpe(returns, k=2))
    with pytest.raises(ValueError, match="at least 8 returns"):
        robust_sharpe(np.full(7, 0.01), k=4)
    assert value("robust", {"val": _metrics()}) == -math.inf  # metrics without equity curves: nothing to split


def test_concat_bar_returns_keeps_window_boundaries_apart() -> None:
    train = np.array([100.0, 110.0, 99.0])
    val = np.array([50.0, 55.0])  # fresh cash: no return from 99 to 50
    assert np.allclose(concat_bar_returns([train, val]), [0.1, -0.1, 0.1])


def test_rubric_full_marks_for_a_strategy_meeting_every_target() -> None:
    score = rubric_score(_metrics())
    assert all(score.gates.values())
    assert score.components == {name: 1.0 for name in RUBRIC_WEIGHTS}
    assert score.total == pytest.approx(1.0)
    assert sum(RUBRIC_WEIGHTS.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("status", "gate"),
    [
        ("parse_error", "valid_code"),
        ("syntax_error", "valid_code"),
        ("rejected", "valid_code"),
        ("runtime_error", "valid_code"),
        ("timeout", "valid_code"),
        ("memory", "valid_code"),
        ("bad_signal", "valid_code"),
        ("lookahead", "no_lookahead"),
        ("nan_equity", "finite_equity"),
        ("no_trades", "trades"),
    ],
)
def test_rubric_hard_gates_zero_the_total(status: str, gate: str) -> None:
    score = rubric_score(_metrics(), status)
    assert score.total == 0.0
    assert score.gates[gate] is False


def test_rubric_gates_also_read_the_metrics() -> None:
    assert rubric_score(_metrics(num_trades=0.0)).gates["trades"] is False
    assert rubric_score(_metrics(num_trades=0.0)).total == 0.0
    assert rubric_score(_metrics(final_equity=math.nan)).total == 0.0


def test_rubric_of_a_failed_evaluation_without_metrics_is_zero() -> None:
    score = rubric_score({}, "runtime_error")
    assert score.total == 0.0
    assert set(score.components.values()) == {0.0}
    assert value("rubric", {}, status="timeout") == 0.0


def test_rubric_rejects_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown evaluation status"):
        rubric_score(_metrics(), "crashed")
    assert "ok" in STATUSES


@pytest.mark.parametrize(("sharpe", "expected"), [(-1.0, 0.0), (0.0, 0.0), (1.0, 0.5), (2.0, 1.0), (5.0, 1.0)])
def test_rubric_sharpe_component(sharpe: float, expected: float) -> None:
    assert rubric_score(_metrics(sharpe=sharpe)).components["sharpe"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("total_return", "bh_return", "expected"),
    [
        (0.30, 0.30, 1.0),  # matching buy-and-hold counts as beating it
        (0.50, 0.30, 1.0),
        (0.04, 0.30, 0.6),  # wealth 1.04 / 1.30 = 0.8 -> (0.8 - 0.5) / 0.5
        (-0.35, 0.30, 0.0),  # half of buy-and-hold's final wealth
        (-0.90, 0.30, 0.0),
        (-0.50, -1.0, 1.0),  # buy-and-hold wiped out
    ],
)
def test_rubric_beats_buy_and_hold_component(total_return: float, bh_return: float, expected: float) -> None:
    metrics = _metrics(total_return=total_return, buy_and_hold_return=bh_return)
    assert rubric_score(metrics).components["beats_buy_and_hold"] == pytest.approx(expected)


@pytest.mark.parametrize(("drawdown", "expected"), [(0.0, 1.0), (-0.1, 0.8), (-0.25, 0.5), (-0.5, 0.0), (-0.8, 0.0)])
def test_rubric_drawdown_component(drawdown: float, expected: float) -> None:
    assert rubric_score(_metrics(max_drawdown=drawdown)).components["drawdown"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("exposure", "expected"),
    [(0.0, 0.0), (0.1, 0.5), (0.2, 1.0), (0.6, 1.0), (0.95, 1.0), (0.975, 0.5), (1.0, 0.0)],
)
def test_rubric_exposure_component(exposure: float, expected: float) -> None:
    assert rubric_score(_metrics(exposure=exposure)).components["exposure"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("total_costs", "expected"),
    [(0.0, 1.0), (250.0, 0.5), (500.0, 0.0), (2_000.0, 0.0)],  # starting capital 13,000 / 1.3 = 10,000
)
def test_rubric_costs_component(total_costs: float, expected: float) -> None:
    assert rubric_score(_metrics(total_costs=total_costs)).components["costs"] == pytest.approx(expected)


def test_rubric_costs_component_is_zero_when_wiped_out() -> None:
    metrics = _metrics(total_return=-1.0, final_equity=0.0, total_costs=10.0)
    assert rubric_score(metrics).components["costs"] == 0.0


@pytest.mark.parametrize(("trades", "expected"), [(1.0, 0.2), (3.0, 0.6), (5.0, 1.0), (40.0, 1.0)])
def test_rubric_trades_component(trades: float, expected: float) -> None:
    assert rubric_score(_metrics(num_trades=trades)).components["trades"] == pytest.approx(expected)


def test_rubric_total_is_the_weighted_sum_and_monotone_in_each_input() -> None:
    metrics = _metrics(sharpe=1.0, exposure=0.1, max_drawdown=-0.25)
    score = rubric_score(metrics)
    assert score.total == pytest.approx(sum(RUBRIC_WEIGHTS[n] * v for n, v in score.components.items()))
    assert score.total == pytest.approx(0.40 * 0.5 + 0.20 + 0.15 * 0.5 + 0.10 * 0.5 + 0.05 + 0.10)
    sharpe_path = [rubric_score(_metrics(sharpe=s)).total for s in np.linspace(-1, 3, 21)]
    drawdown_path = [rubric_score(_metrics(max_drawdown=-d)).total for d in np.linspace(0, 0.7, 15)]
    cost_path = [rubric_score(_metrics(total_costs=c)).total for c in np.linspace(0, 800, 17)]
    assert all(a <= b for a, b in pairwise(sharpe_path))
    assert all(a >= b for a, b in pairwise(drawdown_path))
    assert all(a >= b for a, b in pairwise(cost_path))
    assert 0.0 <= min(sharpe_path) and max(sharpe_path) <= 1.0


def test_rubric_objective_equals_the_rubric_total() -> None:
    windows = {"train": _metrics(), "val": _metrics(sharpe=1.0)}
    assert value("rubric", windows) == pytest.approx(rubric_score(windows["val"]).total)
    assert value("rubric", windows, status="lookahead") == 0.0


@pytest.mark.parametrize(
    ("status", "expected"),
    [("syntax_error", -1.0), ("rejected", -1.0), ("parse_error", -1.0), ("lookahead", -0.7), ("no_trades", -0.7)],
)
def test_composite_scores_invalid_code_minus_one_and_a_failed_check_minus_point_seven(
    status: str, expected: float
) -> None:
    assert value("composite", {"train": _metrics(), "val": _metrics()}, status=status) == pytest.approx(expected)


def test_composite_is_point_three_compile_plus_point_seven_squashed_sharpe() -> None:
    windows = {"train": _metrics(), "val": _metrics(sharpe=1.0)}
    score = score_evaluation(Evaluation(Status.OK, windows=windows), "composite")
    assert score.components == {"compile": 0.0, "performance": pytest.approx(0.5 / 1.5)}
    assert score.total == pytest.approx(0.7 / 3)


def test_composite_ranks_the_worst_honest_strategy_above_every_failure() -> None:
    """A raw Sharpe would let code that fails on purpose (-0.3) beat a bad strategy: a policy would learn to fail."""
    worst_honest = value("composite", {"train": _metrics(), "val": _metrics(sharpe=-1e6)})
    failures = [value("composite", {"val": _metrics()}, status=s) for s in ("syntax_error", "lookahead", "no_trades")]
    assert worst_honest > max(failures)


def test_statuses_mirror_the_evaluation_statuses() -> None:
    from autotrade.evaluation.evaluate import Status

    assert STATUSES == {status.value for status in Status}


def test_each_objective_is_described_for_the_prompt_with_its_k() -> None:
    def describe(name: str, k: int = 4) -> str:
        return OBJECTIVES.get(name).describe(k)

    assert "validation" in describe("val_return") and "Sharpe" in describe("val_sharpe")
    assert "over 6 consecutive" in describe("robust", k=6)
    rubric = describe("rubric")
    assert "[0, 1]" in rubric and "look-ahead" in rubric and "no trades" in rubric


def test_sub_window_sharpes_are_in_time_order_and_robust_is_their_minimum() -> None:
    r = _regimes([0.002, -0.001, 0.001])
    parts = sub_window_sharpes(r, k=3)
    assert parts[0] > parts[2] > 0 > parts[1]
    assert robust_sharpe(r, k=3) == min(parts)


# -- the registry: one module and one line per objective ---------------------------------------------------------

CALMAR = ValidationMetric(
    name="val_calmar",
    metric="calmar",
    sentence="the Calmar ratio of the validation window (higher is better)",
)


@pytest.fixture
def calmar_registered(monkeypatch: pytest.MonkeyPatch) -> str:
    """A new objective, registered the way a new module would be: one registry line pointing at it."""
    from autotrade.registry import Entry

    monkeypatch.setitem(
        OBJECTIVES.entries, "val_calmar", Entry("Calmar ratio of the validation window", f"{__name__}:CALMAR")
    )
    return "val_calmar"


def test_every_registered_objective_is_its_own_name_and_formats_a_missing_value() -> None:
    for name in OBJECTIVES.names():
        objective = OBJECTIVES.get(name)
        assert objective.name == name
        assert objective.format(None) == "—" and objective.format(math.nan, missing="n/a") == "n/a"
        assert objective.gated < 0.5  # below any passing total of a bounded objective, -inf for the unbounded
    assert format_score("val_return", 0.1234) == "+12.34%" and format_score("rubric", 0.5) == "0.500"
    assert not has_own_column("val_return") and has_own_column("robust")


def test_a_value_of_an_objective_this_version_does_not_know_prints_as_a_number() -> None:
    assert format_score("val_sortino", 1.23456) == "1.235" and has_own_column("val_sortino")


def test_a_newly_registered_objective_is_described_scored_and_formatted(calmar_registered: str) -> None:
    assert calmar_registered in OBJECTIVES.names()
    assert OBJECTIVES.get(calmar_registered).describe(4).startswith("the Calmar ratio")
    assert value(calmar_registered, {"val": _metrics(calmar=1.7)}) == 1.7
    assert value(calmar_registered, {"val": _metrics(calmar=1.7)}, status="lookahead") == -math.inf
    assert format_score(calmar_registered, 1.7) == "1.700"


def test_a_newly_registered_objective_is_accepted_by_the_run_settings(calmar_registered: str) -> None:
    from autotrade.research.config import RunSettings

    assert RunSettings(objective=calmar_registered).objective == calmar_registered
    assert RunSettings.from_dict({"objective": calmar_registered}).objective == calmar_registered


def test_a_newly_registered_objective_ranks_a_run_from_the_command_line(
    calmar_registered: str, small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from autotrade.cli.app import app

    monkeypatch.chdir(tmp_path)
    argv = ["run", "--objective", calmar_registered, "--policy", "random", "--max-iter", "2", "--seed", "3"]
    outcome = CliRunner().invoke(app, [*argv, "--name", "c", "--quiet", "--data", str(small_data)])
    assert outcome.exit_code == 0, outcome.output
    assert f"objective={calmar_registered}" in outcome.output
    run = tmp_path / "train" / "c"
    assert json.loads((run / "config.json").read_text())["settings"]["objective"] == calmar_registered
    ranked = [r for r in records(run) if r["status"] == "ok"]
    assert ranked and all(r["objective"] == r["windows"]["val"]["calmar"] for r in ranked)


def test_the_objective_registry_imports_no_numpy() -> None:
    probe = "import sys, autotrade.evaluation.objectives; print(sorted({'numpy', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
