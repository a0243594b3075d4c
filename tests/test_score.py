"""score_code / score_reply: hard gates, components and totals through the real evaluation path, research only."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_loop import LOOKAHEAD, answer, sma_block

from autotrade.candidate import baseline_source, splice_block
from autotrade.data.prepared import PreparedData, load_prepared
from autotrade.evaluation.objectives import OBJECTIVES
from autotrade.evaluation.objectives.rubric import RUBRIC_WEIGHTS
from autotrade.evaluation.score import Score, score_code
from autotrade.research.reward import score_reply
from autotrade.sandbox.pool import SandboxPool

NEVER_TRADES = "def generate_features(df):\n    return df\n\n\ndef strategy_logic(row):\n    return 0\n"
SYNTAX_ERROR = "def generate_features(df)\n    return df\n\n\ndef strategy_logic(row):\n    return 1\n"
IMPORTS_OS = "import os\n\n\ndef generate_features(df):\n    return df\n\n\ndef strategy_logic(row):\n    return 1\n"
WHOLE_SAMPLE_MEAN = (
    "def generate_features(df):\n    df['above_mean'] = df['Close'] - df['Close'].mean()\n    return df\n\n\n"
    "def strategy_logic(row):\n    return 1 if row['above_mean'] < 0 else -1\n"
)


@pytest.fixture(scope="module")
def data(small_data: Path) -> PreparedData:  # noqa: F811 - the fixture imported above
    return load_prepared(small_data)


def assert_gated(score: Score, gate: str, status: str) -> None:
    assert score.status == status
    assert score.gates[gate] is False and not score.passed
    assert score.total == 0.0


def test_code_that_does_not_compile_scores_zero(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    assert_gated(score_code(SYNTAX_ERROR, data, pool=sandbox_pool), "valid_code", "syntax_error")


def test_code_rejected_by_vetting_scores_zero(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    score = score_code(IMPORTS_OS, data, pool=sandbox_pool)
    assert_gated(score, "valid_code", "rejected")
    assert "line 1" in score.message


def test_lookahead_scores_zero(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    score = score_code(WHOLE_SAMPLE_MEAN, data, pool=sandbox_pool)
    assert_gated(score, "no_lookahead", "lookahead")
    assert score.gates["valid_code"] is True


def test_a_strategy_that_never_trades_scores_zero(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    assert_gated(score_code(NEVER_TRADES, data, pool=sandbox_pool), "trades", "no_trades")


def test_a_valid_strategy_gets_weighted_components_on_research_windows_only(
    data: PreparedData, sandbox_pool: SandboxPool
) -> None:
    score = score_code(sma_block(10, 30), data, pool=sandbox_pool)
    assert score.status == "ok" and score.passed
    assert set(score.components) == set(RUBRIC_WEIGHTS)
    assert all(0.0 <= value <= 1.0 for value in score.components.values())
    assert score.total == pytest.approx(sum(RUBRIC_WEIGHTS[k] * v for k, v in score.components.items()))
    assert 0.0 < score.total <= 1.0
    assert set(score.windows) == {"train", "val"}  # never the held-out test window


def test_a_whole_trade_py_scores_like_its_block(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    whole = splice_block(baseline_source(), sma_block(5, 20))
    assert score_code(whole, data, pool=sandbox_pool) == score_code(sma_block(5, 20), data, pool=sandbox_pool)


def test_other_objectives_read_their_figure_and_gate_to_minus_infinity(
    data: PreparedData, sandbox_pool: SandboxPool
) -> None:
    val_return = score_code(sma_block(10, 30), data, objective="val_return", pool=sandbox_pool)
    assert val_return.total == val_return.windows["val"]["total_return"] == val_return.components["val_return"]
    sharpe = score_code(sma_block(10, 30), data, objective="val_sharpe", pool=sandbox_pool)
    assert sharpe.total == sharpe.windows["val"]["sharpe"]
    robust = score_code(sma_block(10, 30), data, objective="robust", robust_k=3, pool=sandbox_pool)
    assert list(robust.components) == ["sharpe_1", "sharpe_2", "sharpe_3"]
    assert robust.total == min(robust.components.values())
    failed = score_code(NEVER_TRADES, data, objective="val_return", pool=sandbox_pool)
    assert failed.total == OBJECTIVES.get("val_return").gated == -math.inf


def test_a_reply_scores_like_the_code_it_holds(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    assert score_reply(answer(sma_block(10, 30), "SMA 10/30"), data, pool=sandbox_pool) == score_code(
        sma_block(10, 30), data, pool=sandbox_pool
    )
    assert score_reply(LOOKAHEAD, data, pool=sandbox_pool).gates["no_lookahead"] is False


def test_a_reply_without_code_fails_the_valid_code_gate(data: PreparedData, sandbox_pool: SandboxPool) -> None:
    assert_gated(score_reply("I would rather not write code.", data, pool=sandbox_pool), "valid_code", "parse_error")
    assert_gated(
        score_reply(f"```python\n{sma_block(10, 30)}", data, finish_reason="length", pool=sandbox_pool),
        "valid_code",
        "truncated",
    )
