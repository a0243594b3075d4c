"""Several assets and walk-forward folds: how a prepared set is made, how the research period is cut, and how a
candidate evaluated on several parts is judged (worst or mean) and shown to the model."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from conftest import synthetic_ohlcv

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.plan import EvalPlan, Folds
from autotrade.data.prepared import Anonymization, PreparedData, load_prepared, prepare_data
from autotrade.data.splits import Splits
from autotrade.data.windows import RESEARCH_WINDOWS, SPLIT_WINDOWS
from autotrade.errors import ConfigError, DataError
from autotrade.evaluation.across import aggregate_windows
from autotrade.evaluation.evaluate import EvalSettings, evaluate_block
from autotrade.evaluation.score import score_evaluation
from autotrade.propose.prompts import describe_population
from autotrade.research.config import RunSettings
from autotrade.research.loop import describe_plan
from autotrade.sandbox.pool import SandboxPool

SPLITS = Splits(pd.Timestamp("2021-01-01"), pd.Timestamp("2021-07-01"))
QUICK = EvalSettings(lookahead=False)  # the gate has tests of its own; here it would only cost time


def asset(name: str, seed: int, drift: float = 0.0) -> PreparedData:
    frame = synthetic_ohlcv(500, seed, "2019-06-03")
    scale = pd.Series(range(len(frame)), index=frame.index).mul(drift).add(1.0)
    for column in ("Open", "High", "Low", "Close", "Adj Close"):
        frame[column] = frame[column] * scale
    return PreparedData(frame, SPLITS, {"dataset": name, "sha256": name})


def two_assets() -> PreparedData:
    up, down = asset("up", 1, 0.0004), asset("down", 2, -0.0002)
    return PreparedData(up.frame, SPLITS, {"dataset": "up+down", "assets": ["up", "down"]}, (up, down))


@pytest.fixture(scope="module")
def bundled_set(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    return prepare_data(ticker="sp500,nasdaq", offline=True, data_dir=tmp_path_factory.mktemp("set"))


def test_folds_cut_the_research_period_into_equal_consecutive_blocks(bundled_set: PreparedData) -> None:
    research = bundled_set.research_frame().index  # 4,277 bars, 1999-01-04 to 2015-12-31
    spans = Folds(3).boundaries(research)
    # 4,277 // 4 = 1,069 bars a block; the first fold's train span takes the 1,070 left over at the start.
    assert [(str(t.date()), str(v.date())) for t, v, _ in spans] == [
        ("1999-01-04", str(research[1070].date())),
        ("1999-01-04", str(research[2139].date())),
        ("1999-01-04", str(research[3208].date())),
    ]
    assert str(research[1070].date()) == "2003-04-08" and spans[0][2] == research[2139]
    assert spans[-1][2] is None  # the last fold validates up to the test window, not into it
    assert (
        Folds(3).describe(research)[2] == "fold3: train 1999-01-04 to 2011-09-30, validation 2011-10-03 to 2015-12-31"
    )


def test_rolling_folds_train_on_as_many_bars_as_the_first_fold(bundled_set: PreparedData) -> None:
    research = bundled_set.research_frame().index
    spans = Folds(3, "rolling").boundaries(research)
    assert [research.get_loc(t) for t, _, _ in spans] == [0, 1069, 2138]
    assert [research.get_loc(v) - research.get_loc(t) for t, v, _ in spans] == [1070, 1070, 1070]


def test_too_many_folds_for_the_history_is_refused_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="--folds 20 leaves"):
        Folds(20).boundaries(pd.bdate_range("2020-01-01", periods=400))
    with pytest.raises(ConfigError, match="--window-mode"):
        Folds(3, "sliding")


def test_a_plan_that_scores_the_held_out_window_is_never_folded(bundled_set: PreparedData) -> None:
    assert EvalPlan.of(bundled_set, RESEARCH_WINDOWS, Folds(3)).folds == Folds(3)
    assert EvalPlan.of(bundled_set, SPLIT_WINDOWS, Folds(3)).folds is None


def test_every_asset_is_cut_on_the_same_fold_dates(bundled_set: PreparedData) -> None:
    plan = EvalPlan.of(bundled_set, RESEARCH_WINDOWS, Folds(2))
    assert plan.labels == ["sp500/fold1", "sp500/fold2", "nasdaq/fold1", "nasdaq/fold2"]
    sp500, nasdaq = plan.bars()
    for (a, sa), (b, sb) in zip(sp500.parts.items(), nasdaq.parts.items(), strict=True):
        assert a.split("/")[1] == b.split("/")[1]
        assert sp500.frame.index[sa["val"].start] == nasdaq.frame.index[sb["val"].start]
    assert sp500.frame.index[-1] < bundled_set.splits.test_start  # research bars only


def test_prepare_writes_a_set_that_loads_back_as_its_assets(bundled_set: PreparedData, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    prepare_data(ticker="sp500,nasdaq", offline=True, data_dir=folder)
    loaded = load_prepared(folder)
    assert [a.name for a in loaded.assets] == ["sp500", "nasdaq"] and loaded.held_out is None
    assert (folder / "assets" / "nasdaq" / "meta.json").is_file()
    assert loaded.meta["sha256"] == bundled_set.meta["sha256"] and loaded.splits == bundled_set.splits


def test_a_changed_asset_file_makes_the_set_refuse_to_load(tmp_path: Path) -> None:
    prepare_data(ticker="sp500,nasdaq", offline=True, data_dir=tmp_path)
    (tmp_path / "assets" / "nasdaq" / "meta.json").write_text(
        json.dumps({**json.loads((tmp_path / "assets" / "nasdaq" / "meta.json").read_text()), "sha256": "0" * 64})
    )
    with pytest.raises(DataError, match="nasdaq"):
        load_prepared(tmp_path)


def test_assets_of_different_bar_frequencies_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="sp500 is daily, eurusd is intraday"):
        prepare_data(ticker="sp500,eurusd", offline=True, data_dir=tmp_path)


def test_the_held_out_asset_never_reaches_research(tmp_path: Path) -> None:
    data = prepare_data(ticker="sp500,nasdaq", offline=True, data_dir=tmp_path, holdout_asset="^IXIC")
    assert [a.name for a in data.assets] == ["sp500"] and data.held_out is not None
    assert data.held_out.name == "nasdaq"
    assert [a.name for a in EvalPlan.of(data, RESEARCH_WINDOWS).assets] == ["sp500"]
    with pytest.raises(ConfigError, match="none of the assets"):
        prepare_data(ticker="sp500,nasdaq", offline=True, data_dir=tmp_path, holdout_asset="goog")
    with pytest.raises(ConfigError, match="needs several assets"):
        prepare_data(ticker="sp500", offline=True, data_dir=tmp_path, holdout_asset="sp500")


def test_anonymized_assets_lose_their_names() -> None:
    view = Anonymization.from_secret(7, pd.Timestamp("2021-12-31")).apply(two_assets())
    assert [a.name for a in view.assets] == ["asset1", "asset2"]
    assert "up" not in json.dumps(view.meta)


def test_a_set_is_judged_on_its_worst_asset(sandbox_pool: SandboxPool) -> None:
    data = two_assets()
    evaluation = evaluate_block(extract_block(baseline_source()), data, settings=QUICK, pool=sandbox_pool)
    assert evaluation.ok, evaluation.message
    assert set(evaluation.parts) == {"up", "down"}
    returns = {label: part["val"]["total_return"] for label, part in evaluation.parts.items()}
    assert evaluation.windows["val"]["total_return"] == min(returns.values())
    score = score_evaluation(evaluation, "val_return")
    assert score.total == min(returns.values()) and score.components == returns
    alone = evaluate_block(extract_block(baseline_source()), data.assets[1], settings=QUICK, pool=sandbox_pool)
    assert alone.windows["val"]["total_return"] == returns["down"]  # one asset of a set scores as it would alone


def test_mean_across_averages_the_parts_objective(sandbox_pool: SandboxPool) -> None:
    data = two_assets()
    evaluation = evaluate_block(
        extract_block(baseline_source()), data, settings=EvalSettings(lookahead=False, across="mean"), pool=sandbox_pool
    )
    sharpes = [part["val"]["sharpe"] for part in evaluation.parts.values()]
    assert math.isclose(score_evaluation(evaluation, "val_sharpe").total, sum(sharpes) / 2)


def test_each_fold_is_scored_on_one_run_of_the_candidate(sandbox_pool: SandboxPool) -> None:
    data = asset("solo", 3)
    settings = EvalSettings(lookahead=False, folds=Folds(2))
    evaluation = evaluate_block(extract_block(baseline_source()), data, settings=settings, pool=sandbox_pool)
    assert list(evaluation.parts) == ["fold1", "fold2"]
    assert evaluation.to_record()["parts"].keys() == {"fold1", "fold2"}
    vals = [evaluation.parts[f]["val"]["bars"] for f in ("fold1", "fold2")]
    assert sum(vals) == evaluation.windows["val"]["bars"] and abs(vals[0] - vals[1]) <= 1
    assert score_evaluation(evaluation, "robust", robust_k=2).components.keys() == {"fold1", "fold2"}


def test_a_failure_on_one_asset_names_that_asset(sandbox_pool: SandboxPool) -> None:
    block = extract_block(baseline_source()).replace(
        "def strategy_logic(row):", "def strategy_logic(row):\n    if row['Close'] < 60: raise ValueError('cheap')", 1
    )
    data = PreparedData(*_pair_with_cheap_second())
    evaluation = evaluate_block(block, data, settings=QUICK, pool=sandbox_pool)
    assert evaluation.status == "runtime_error" and evaluation.message.startswith("on cheap: ")


def _pair_with_cheap_second() -> tuple:
    rich, cheap = asset("rich", 4), asset("cheap", 5)
    for column in ("Open", "High", "Low", "Close", "Adj Close"):
        cheap.frame[column] = cheap.frame[column] * 0.5
    return rich.frame, SPLITS, {"dataset": "rich+cheap"}, (rich, cheap)


def test_headline_metrics_take_each_metrics_worst_part() -> None:
    parts = {
        "a": {"val": {"total_return": 0.1, "max_drawdown": -0.3, "total_costs": 5.0, "bars": 10.0}},
        "b": {"val": {"total_return": -0.2, "max_drawdown": -0.1, "total_costs": 9.0, "bars": 12.0}},
    }
    assert aggregate_windows(parts, "worst") == {
        "val": {"total_return": -0.2, "max_drawdown": -0.3, "total_costs": 9.0, "bars": 22.0}
    }
    assert aggregate_windows(parts, "mean")["val"]["total_return"] == pytest.approx(-0.05)


@dataclass
class Member:
    iteration: int = 4
    parent: int | None = 0
    status: str = "ok"
    message: str = ""
    error_type: str | None = None
    traceback: str = ""
    windows: dict = field(default_factory=lambda: {"train": {"total_return": 0.1}, "val": {"total_return": -0.02}})
    parts: dict = field(
        default_factory=lambda: {
            "sp500": {"val": {"total_return": 0.05, "num_trades": 7}},
            "nasdaq": {"val": {"total_return": -0.02, "num_trades": 3}},
        }
    )
    objective: float | None = -0.02
    entered_population: bool = True
    hypothesis: str = "trend"
    suspicious: tuple = ()


def test_the_prompt_shows_every_parts_validation_result_and_how_they_aggregate() -> None:
    text = describe_population([Member()], "val_return", lambda v: f"{v:+.2%}")
    assert "   validation (worst of 2 parts): return -2.00%" in text
    assert "   sp500 validation: return +5.00%" in text and "   nasdaq validation: return -2.00%" in text
    plan = describe_plan(RunSettings(folds=2), ["sp500", "nasdaq"], pd.bdate_range("2000-01-03", periods=900))
    assert "on each of 2 assets (sp500, nasdaq) and on 2 walk-forward folds" in plan
    assert plan.endswith("the objective is the worst of these 4 parts' values")


def test_a_run_on_a_set_reveals_the_held_out_asset_only_in_the_report(tmp_path: Path) -> None:
    from test_report import make_run

    from autotrade.data.sources import load_bundled
    from autotrade.report.compute import build_report
    from autotrade.report.render import holdout_section
    from autotrade.research.rundir import RunDir

    for name in ("sp500", "nasdaq"):
        frame = load_bundled(name)
        frame[frame.index >= "2018-02-01"].to_csv(tmp_path / f"{name}.csv")  # few bars: the gate's cost grows fast
    synthetic_ohlcv(230, 9, "2018-02-01").to_csv(tmp_path / "secret.csv")
    files = [tmp_path / f"{name}.csv" for name in ("sp500", "nasdaq", "secret")]
    data = prepare_data(
        csv=files, data_dir=tmp_path / "data", val_start="2018-07-01", test_start="2018-10-01", holdout_asset="secret"
    )
    assert [a.name for a in data.assets] == ["sp500", "nasdaq"] and data.held_out.name == "secret"
    run = make_run(tmp_path, tmp_path / "data", "set", [])  # the baseline alone
    baseline = json.loads((run / "iter_0_results.json").read_text())
    assert set(baseline["parts"]) == {"sp500", "nasdaq"}  # research ran on both, never on the held-out asset
    assert "secret" not in (run / "journal.jsonl").read_text() + (run / "learnings.md").read_text()
    report = build_report(RunDir.open(tmp_path / "train", "set"))
    rows = [row[0].strip() for row in holdout_section(report).rows]
    assert rows[:4] == ["★1 iter 0", "sp500", "nasdaq", "secret (held-out asset)"]
    held = report.holdout.held_out[0]
    assert held.ok and held.windows["test"]["bars"] == len(data.held_out.window("test"))
    recorded = json.loads((run / "holdout.json").read_text())["reveals"][0]["test"]["0"]
    assert recorded["held_out_asset"]["total_return"] == pytest.approx(held.windows["test"]["total_return"])
