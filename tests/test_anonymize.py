"""`run --anonymize`: the model never sees the instrument or the calendar; results and the report's dates stay true."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from openai_server import OpenAIServer, Reply
from test_loop import answer, sma_block, start

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.prepared import Anonymization, load_prepared
from autotrade.evaluation.evaluate import EvalSettings, evaluate_block
from autotrade.report.compute import build_report
from autotrade.research.rundir import RunDir
from autotrade.sandbox.pool import SandboxPool

REAL_DATES = re.compile(r"\b(2014|2015|2016|2017|2018)-\d\d-\d\d\b")


def test_dates_move_by_whole_weeks_and_prices_by_a_power_of_two(small_data: Path) -> None:
    data = load_prepared(small_data)
    view = Anonymization.from_secret(12345, data.frame.index[-1])
    hidden = view.apply(data)
    assert (hidden.frame.index.day_of_week == data.frame.index.day_of_week).all()
    assert abs(view.weeks) >= 2600 and view.real_index(hidden.frame.index).equals(data.frame.index)
    ratio = hidden.frame["Close"].to_numpy() / data.frame["Close"].to_numpy()
    assert np.all(ratio == ratio[0]) and np.log2(ratio[0]) == round(np.log2(ratio[0])) != 0
    assert hidden.splits.val_start - data.splits.val_start == view.shift
    assert "ticker" not in hidden.meta and "dataset" not in hidden.meta


def test_a_scale_free_strategy_scores_exactly_the_same_anonymized(small_data: Path, sandbox_pool: SandboxPool) -> None:
    data = load_prepared(small_data)
    hidden = Anonymization.from_secret(7, data.frame.index[-1]).apply(data)
    block = extract_block(baseline_source())
    settings = EvalSettings(gate_secret=1)
    real = evaluate_block(block, data, settings=settings, pool=sandbox_pool)
    seen = evaluate_block(block, hidden, settings=settings, pool=sandbox_pool)
    assert real.ok and seen.ok
    assert real.windows == seen.windows  # bit for bit: powers of two scale exactly


def test_an_anonymized_run_shows_the_model_no_real_date_and_the_report_real_ones(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    lookahead = answer(sma_block(5, 20).replace("rolling(20)", "rolling(20, center=True)"), "Centred")
    openai_server.script([Reply(answer(sma_block(5, 20), "SMA 5/20")), Reply(lookahead)])
    result, _ = start(openai_server, tmp_path, small_data, max_iter=3, anonymize=True)
    prompts = [request.body["messages"][-1]["content"] for request in openai_server.chat_requests]
    assert len(prompts) == 2
    for prompt in prompts:
        assert not REAL_DATES.search(prompt), REAL_DATES.search(prompt)
        assert "GSPC" not in prompt and "S&P" not in prompt
    assert "look-ahead" in prompts[-1] or "lookahead" in prompts[-1]  # the failure is shown, in hidden dates
    assert not REAL_DATES.search((result.path / "learnings.md").read_text())
    report = build_report(RunDir(result.path), holdout=False)
    assert report.data["anonymized"] and report.data["first"].startswith("2014")
    curve = next(iter(report.curves.members.values()))
    assert curve.index[0].year == 2014 and curve.index[-1].year == 2017


@pytest.mark.parametrize("secret", [1, 2, 3])
def test_the_shift_never_leaves_the_range_pandas_can_hold(secret: int) -> None:
    import pandas as pd

    for last in (pd.Timestamp("2018-12-31"), pd.Timestamp("2200-01-01")):
        view = Anonymization.from_secret(secret, last)
        assert pd.Timestamp("1700-01-01") < last + view.shift < pd.Timestamp("2260-01-01")


def test_the_holdout_record_of_an_anonymized_run_names_the_real_test_start(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    import json

    openai_server.script([Reply(answer(sma_block(5, 20), "SMA 5/20"))])
    result, _ = start(openai_server, tmp_path, small_data, max_iter=2, anonymize=True)
    build_report(RunDir(result.path), holdout=True)
    recorded = json.loads((result.path / "holdout.json").read_text())
    assert recorded["test_start"] == str(load_prepared(small_data).splits.test_start.date())
