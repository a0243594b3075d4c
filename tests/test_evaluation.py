"""The one evaluation path: statuses, gates, honesty of what the candidate sees, and the seed numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.plan import EvalPlan
from autotrade.data.prepared import PreparedData, load_prepared
from autotrade.data.windows import RESEARCH_WINDOWS, Window
from autotrade.engine.backtest import BacktestSettings, Fill
from autotrade.errors import ConfigError
from autotrade.evaluation.evaluate import EvalSettings, Status, evaluate_block
from autotrade.sandbox.pool import SandboxPool

BASELINE = extract_block(baseline_source())
SEED = EvalSettings(backtest=BacktestSettings(fill=Fill.CLOSE, cost_bps=0.0))

FEATURES = BASELINE[: BASELINE.index("def strategy_logic")]


@pytest.fixture(scope="module")
def data(prepared_dir: Path) -> PreparedData:
    return load_prepared(prepared_dir)


def test_baseline_reproduces_the_original_harness_numbers_through_the_sandbox(
    data: PreparedData, sandbox_pool: SandboxPool
) -> None:
    evaluation = evaluate_block(BASELINE, data, windows=("full",), settings=SEED, pool=sandbox_pool)
    full = evaluation.windows["full"]
    assert evaluation.status is Status.OK
    assert full["total_return"] == pytest.approx(0.381912604536292, abs=1e-9)
    assert full["sharpe"] == pytest.approx(0.2009463423477185, abs=1e-9)
    assert full["max_drawdown"] == pytest.approx(-0.36432831105976626, abs=1e-9)
    assert full["num_trades"] == 58


def test_research_evaluation_never_gives_the_candidate_test_bars(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    peeking = BASELINE.replace(
        "    return df\n",
        "    if df.index[-1] >= pd.Timestamp('2016-01-01'):\n"
        "        raise ValueError('saw the test window')\n    return df\n",
        1,
    )
    assert evaluate_block(peeking, data, pool=sandbox_pool).status is Status.OK
    assert evaluate_block(peeking, data, windows=("test",), pool=sandbox_pool).error_type == "ValueError"


def test_overwriting_prices_in_features_does_not_change_the_fills(
    data: PreparedData, sandbox_pool: SandboxPool
) -> None:
    tampering = BASELINE.replace(
        "    return df\n", "    df['Close'] = df['Close'] * 3\n    df['Open'] = 1.0\n    return df\n", 1
    )
    honest, tampered = (
        evaluate_block(BASELINE, data, pool=sandbox_pool),
        evaluate_block(tampering, data, pool=sandbox_pool),
    )
    assert tampered.status is Status.OK
    assert tampered.windows == honest.windows


def test_strategy_that_never_trades_in_validation_is_no_trades(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    idle = FEATURES + "def strategy_logic(row):\n    return 0\n"
    evaluation = evaluate_block(idle, data, pool=sandbox_pool)
    assert evaluation.status is Status.NO_TRADES
    assert evaluation.windows["val"]["num_trades"] == 0


def test_missing_column_is_a_typed_runtime_error(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    evaluation = evaluate_block(BASELINE.replace('row["SMA_20"] >', 'row["RSI_14"] >'), data, pool=sandbox_pool)
    assert evaluation.status is Status.RUNTIME_ERROR
    assert evaluation.error_type == "KeyError"
    assert "RSI_14" in evaluation.message


def test_whole_sample_normalisation_is_look_ahead_naming_the_column(
    data: PreparedData, sandbox_pool: SandboxPool
) -> None:
    leaking = BASELINE.replace("    return df\n", "    df['Z'] = df['Close'] / df['Close'].max()\n    return df\n", 1)
    evaluation = evaluate_block(leaking, data, pool=sandbox_pool)
    assert evaluation.status is Status.LOOKAHEAD
    assert "'Z'" in evaluation.message


def test_import_of_os_is_rejected_with_its_line(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    evaluation = evaluate_block("import os\n" + BASELINE, data, pool=sandbox_pool)
    assert evaluation.status is Status.REJECTED
    assert evaluation.message.startswith("line 1:")


def test_broken_syntax_is_syntax_error(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    evaluation = evaluate_block(
        BASELINE.replace("def strategy_logic(row):", "def strategy_logic(row)"), data, pool=sandbox_pool
    )
    assert evaluation.status is Status.SYNTAX_ERROR


def test_signal_outside_minus_one_to_one_is_bad_signal(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    evaluation = evaluate_block(BASELINE.replace("return 1\n", "return 2\n", 1), data, pool=sandbox_pool)
    assert evaluation.status is Status.BAD_SIGNAL
    assert "2" in evaluation.message


def test_record_is_strict_json(data: PreparedData) -> None:  # no pool: the default path starts one of its own
    record = evaluate_block(BASELINE, data).to_record()
    assert json.loads(json.dumps(record, allow_nan=False))["windows"]["val"]["bars"] == 756


@pytest.mark.parametrize(
    ("field", "value"), [("timeout_s", float("inf")), ("timeout_s", float("nan")), ("timeout_s", 0.0), ("memory_mb", 0)]
)
def test_eval_settings_refuse_limits_the_worker_cannot_apply(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        EvalSettings(**{field: value})


# --- the evaluation plan ---------------------------------------------------------------------------------


def test_a_research_plan_gives_no_test_bar_and_its_windows_tile_the_bars(data: PreparedData) -> None:
    (bars,) = EvalPlan.of(data, RESEARCH_WINDOWS).bars()
    pd.testing.assert_frame_equal(bars.frame, data.research_frame())
    windows = bars.parts[""]  # one asset, no folds: one part
    assert list(windows) == [Window.TRAIN, Window.VAL]
    assert windows[Window.TRAIN] == slice(0, bars.val_position)
    assert windows[Window.VAL] == slice(bars.val_position, len(bars.frame))
    assert bars.frame.index[bars.val_position] == data.window("val").index[0]


def test_a_plan_with_a_held_out_window_gets_every_bar_and_each_window_its_own_rows(data: PreparedData) -> None:
    (bars,) = EvalPlan.of(data, ["test", "train"]).bars()
    pd.testing.assert_frame_equal(bars.frame, data.frame)
    assert list(bars.parts[""]) == [Window.TEST, Window.TRAIN]  # the caller's order, as the metrics are keyed
    for window, rows in bars.parts[""].items():
        pd.testing.assert_frame_equal(bars.frame.iloc[rows], data.window(window))


def test_an_unknown_window_is_a_config_error_before_the_candidate_runs(
    data: PreparedData, sandbox_pool: SandboxPool
) -> None:
    with pytest.raises(ConfigError, match="unknown window 'holdout': choose one of train, val, test, full"):
        evaluate_block(BASELINE, data, windows=("train", "holdout"), pool=sandbox_pool)


def test_metrics_are_keyed_by_window_and_recorded_under_todays_names(
    data: PreparedData, sandbox_pool: SandboxPool
) -> None:
    evaluation = evaluate_block(BASELINE, data, windows=(Window.TRAIN, "val"), pool=sandbox_pool)
    assert list(evaluation.windows) == [Window.TRAIN, Window.VAL] == ["train", "val"]
    record = evaluation.to_record()["windows"]
    assert [type(name) for name in record] == [str, str] and list(json.loads(json.dumps(record))) == ["train", "val"]
