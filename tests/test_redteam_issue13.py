"""Red-team checks of issue 13's new code: ways a proposal could be refused for a strategy it did not repeat, a search
look as if it had tried fewer strategies than it ran, or a set's walk-forward fail in the middle of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from conftest import synthetic_ohlcv

from autotrade.data.plan import EvalPlan, Folds
from autotrade.data.prepared import PreparedData, prepare_data
from autotrade.data.splits import Splits
from autotrade.data.windows import RESEARCH_WINDOWS
from autotrade.errors import ConfigError, DataError
from autotrade.evaluation.novelty import block_structure
from autotrade.propose.prompts import describe_population
from autotrade.report.compare import rule_differences
from autotrade.report.trials import TrialCount, count_trials
from autotrade.research.attempt import Attempt
from autotrade.research.config import RunSettings
from autotrade.status import Status

ROLLING = 'def generate_features(df):\n    df["f"] = df["Close"].{call}\n    return df\n'


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ('rolling(20, closed="left").max()', 'rolling(20, closed="right").max()'),  # which bars the window holds
        ('rolling(20).agg("max")', 'rolling(20).agg("min")'),  # a different aggregation
        ('fillna(method="ffill")', 'fillna(method="bfill")'),  # the past, or the future
        ('resample("W").last()', 'resample("M").last()'),  # a different bar size
    ],
)
def test_a_different_string_argument_is_not_a_structure_twin(one: str, other: str) -> None:
    # A twin is refused without running and recorded with its twin's figures: only a block that computes the same
    # positions may be one, and these compute something else.
    assert block_structure(ROLLING.format(call=one)) != block_structure(ROLLING.format(call=other))


def test_renamed_feature_columns_are_still_a_structure_twin() -> None:
    renamed = ROLLING.format(call="rolling(20).mean()").replace('df["f"]', 'df["sma"]')
    assert block_structure(ROLLING.format(call="rolling(20).mean()")) == block_structure(renamed)


def test_a_position_twin_that_ran_counts_as_a_trial_but_a_reused_structure_twin_does_not() -> None:
    sma = ROLLING.format(call="rolling({n}).mean()")
    found = count_trials(
        [
            Attempt(iteration=0, status=Status.OK, block=sma.format(n=10), timings={"run_s": 0.2}),
            # Evaluated on the data, then refused for moving with iteration 0: the validation window chose among it.
            Attempt(
                iteration=1,
                status=Status.DUPLICATE,
                block=sma.format(n=11),
                timings={"run_s": 0.2},
                twin=0,
                twin_correlation=0.995,
            ),
            # Iteration 0's structure again: its result reused, its code never ran.
            Attempt(iteration=2, status=Status.DUPLICATE, block=sma.format(n=10).replace("df", "frame"), twin=0),
        ],
        {},
    )
    assert found == TrialCount(ran=2, ok=1)


def test_a_fold_that_an_assets_history_does_not_reach_is_refused_naming_the_asset() -> None:
    # Fold dates come from the first asset; a second asset whose history starts later shares the splits (prepare
    # accepts it) but gets a first train span too short to learn from (or none: then evaluation raised mid-run).
    splits = Splits(pd.Timestamp("2021-01-01"), pd.Timestamp("2021-07-01"))
    long = PreparedData(synthetic_ohlcv(700, 1, "2019-01-01"), splits, {"dataset": "long"})
    late = PreparedData(synthetic_ohlcv(550, 2, "2019-06-03"), splits, {"dataset": "late"})
    both = PreparedData(long.frame, splits, {"dataset": "long+late", "assets": ["long", "late"]}, (long, late))
    assert len(EvalPlan.of(both, RESEARCH_WINDOWS, Folds(2)).bars()) == 2  # fold1 starts late enough for both
    with pytest.raises(ConfigError, match=r"--folds 3.*late.*fold1"):
        EvalPlan.of(both, RESEARCH_WINDOWS, Folds(3)).bars()


def test_the_same_bars_under_two_file_names_are_refused_as_a_set(tmp_path: Path) -> None:
    # Counted twice they weigh double in a mean; held out, the "unseen" asset would be the researched one.
    synthetic_ohlcv(400, 3, "2019-01-01").to_csv(tmp_path / "spy.csv")
    (tmp_path / "copy.csv").write_bytes((tmp_path / "spy.csv").read_bytes())
    files = [tmp_path / "spy.csv", tmp_path / "copy.csv"]
    with pytest.raises(DataError, match="same bars"):
        prepare_data(csv=files, data_dir=tmp_path / "data", holdout_asset="copy")


def test_compare_names_the_evaluation_rules_its_runs_do_not_share() -> None:
    # A worst-of-five-folds objective beside a single window's is no equal footing, though the data is the same.
    plain, walked = RunSettings(), RunSettings(folds=5, across="mean", max_iter=9)
    assert rule_differences({"local": plain, "frontier": walked}) == [
        "folds: local 1, frontier 5",
        "across: local worst, frontier mean",
    ]
    assert rule_differences({"local": plain, "frontier": RunSettings(max_iter=9, seed=3)}) == []


def test_a_stray_comma_after_one_ticker_is_that_ticker(tmp_path: Path) -> None:
    # `sp500,,nasdaq` drops the empty name; `sp500,` must too (online, `SPY,` would fail to download and fall back).
    assert prepare_data(ticker="sp500,", offline=True, data_dir=tmp_path).name == "sp500"


@dataclass
class TwoAssetMember:
    """A population member of a two-asset run: it trails buy-and-hold on sp500 and beats a falling nasdaq."""

    iteration: int = 4
    parent: int | None = 0
    status: str = "ok"
    message: str = ""
    error_type: str | None = None
    traceback: str = ""
    windows: dict = field(
        default_factory=lambda: {"val": {"total_return": -0.02, "buy_and_hold_return": -0.30}}  # each its worst part
    )
    parts: dict = field(
        default_factory=lambda: {
            "sp500": {"val": {"total_return": -0.02, "buy_and_hold_return": 0.10}},
            "nasdaq": {"val": {"total_return": 0.05, "buy_and_hold_return": -0.30}},
        }
    )
    objective: float | None = -0.02
    entered_population: bool = True
    hypothesis: str = "trend"
    suspicious: tuple = ()


def test_the_prompt_sets_each_parts_buy_and_hold_beside_that_parts_result() -> None:
    # The worst return (sp500's) beside the worst buy-and-hold (nasdaq's) would read as beating the market by 28
    # points where the strategy trailed it by 12.
    text = describe_population([TwoAssetMember()], "val_return", lambda v: f"{v:+.2%}")
    assert "sp500 validation: return -2.00%" in text and "buy-and-hold +10.00%" in text
    assert "validation -30.00%" not in text


def test_a_different_builtin_or_module_function_is_not_a_structure_twin() -> None:
    from autotrade.evaluation.novelty import block_structure

    block = (
        "def generate_features(df):\n    df['x'] = df['Close'].rolling(10).mean()\n    return df\n\n\n"
        "def strategy_logic(row):\n    return 1 if max(row['x'], row['Open']) > row['Close'] else -1\n"
    )
    assert block_structure(block) != block_structure(block.replace("max(", "min("))
    assert block_structure(block) != block_structure(block.replace("max(", "np.maximum("))
    renamed = block.replace("df", "frame").replace("row", "bar")  # the block's own names stay cosmetic
    assert block_structure(block) == block_structure(renamed)
