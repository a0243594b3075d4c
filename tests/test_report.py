"""The report on real runs produced against the loopback server: leaderboard, statistics, taxonomy, diversity,
spend, files.

The helpers at the top (replies, `make_run`, `copy_run`) are shared with test_holdout.py and test_cli_report.py.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import test_loop as replies
from openai_server import OpenAIServer, Reply
from recording import RecordingReporter
from test_loop import answer, sma_block

from autotrade.data.prepared import load_prepared, prepare_data
from autotrade.data.sources import load_bundled
from autotrade.engine.backtest import BacktestSettings, Fill
from autotrade.engine.stats import deflated_sharpe_ratio, pbo_cscv, probabilistic_sharpe_ratio, sharpe_moments
from autotrade.errors import DataError
from autotrade.evaluation.evaluate import EvalSettings, evaluate_block
from autotrade.fmt import num
from autotrade.propose.prompts import load_prompt_files
from autotrade.report.compute import build_report, spend_of, summary
from autotrade.report.plots import PNG_SIGNATURE
from autotrade.report.render import (
    EQUITY_PNG,
    HTML_FILE,
    OBJECTIVE_PNG,
    collapse_sections,
    header_lines,
    write_files,
)
from autotrade.research.attempt import Attempt, Turn
from autotrade.research.config import RunSettings, model_settings
from autotrade.research.loop import start_run
from autotrade.research.rundir import RunDir
from autotrade.sandbox.pool import SandboxPool
from autotrade.status import Status

# -- shared helpers ------------------------------------------------------------------------------------


def good(fast: int, slow: int) -> Reply:
    return Reply(answer(sma_block(fast, slow), f"SMA {fast}/{slow}"), usage=(1000, 200))


KEY_ERROR = Reply(replies.KEY_ERROR, usage=(1000, 100))
LOOKAHEAD = Reply(replies.LOOKAHEAD, usage=(1000, 100))
SYNTAX = Reply(replies.SYNTAX, usage=(1000, 100))
NO_CODE = Reply("I would add an RSI filter.", usage=(1000, 20))

# 10 iterations: 5 ok (baseline + 4 crossovers), KeyError ×2, look-ahead, SyntaxError, unparseable reply.
MIXED = [good(5, 20), KEY_ERROR, good(10, 50), LOOKAHEAD, SYNTAX, good(20, 100), NO_CODE, good(15, 40), KEY_ERROR]


def make_run(root: Path, data: Path, name: str, replies: list[Reply], **overrides: object) -> Path:
    """Run the loop in-process against a fresh loopback server; return the run directory."""
    values: dict = {
        "max_iter": len(replies) + 1,
        "max_fails": 20,
        "population": 3,
        "seed": 7,
        "data_dir": str(data),
        "repair": 0,  # one reply per iteration, as scripted (unless a test asks for repair)
    }
    with OpenAIServer() as server:
        server.script(replies)
        endpoint = model_settings(base_url=server.base_url, environ={"OPENAI_API_KEY": "sk-test"})
        result = start_run(
            RunSettings(**{**values, **overrides}),
            endpoint,
            RecordingReporter(),
            prompts=load_prompt_files(root),
            name=name,
            root=root / "train",
        )
    return result.path


def copy_run(run: Path, name: str) -> RunDir:
    """A copy of a run beside it (reports write into their run)."""
    target = run.parent / name
    shutil.copytree(run, target)
    return RunDir(target)


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> Path:
    """A work folder holding the mixed run, on small data: its statistics need the longer sample."""
    root = tmp_path_factory.mktemp("report")
    make_run(root, small_data, "mixed", MIXED)
    return root


@pytest.fixture(scope="module")
def mixed(lab: Path) -> tuple:
    """The mixed run's report (test window revealed) and the files written."""
    run = copy_run(lab / "train" / "mixed", "mixed-report")
    report = build_report(run, at="2030-01-02T03:04:05+00:00")
    return report, write_files(report)


def records(run: Path) -> list[dict]:
    found = sorted(run.glob("iter_*_results.json"), key=lambda p: int(p.name.split("_")[1]))
    return [json.loads(p.read_text()) for p in found]


def settings_of(run: Path) -> EvalSettings:
    config = json.loads((run / "config.json").read_text())["settings"]
    return EvalSettings(backtest=BacktestSettings(fill=Fill(config["fill"]), cost_bps=config["cost_bps"]))


# -- tests ---------------------------------------------------------------------------------------------


def test_leaderboard_lists_every_iteration_with_status_parent_and_population(mixed: tuple, lab: Path) -> None:
    report, _ = mixed
    found = records(lab / "train" / "mixed")
    assert [r.status for r in report.rows] == [r["status"] for r in found]
    assert [r.parent for r in report.rows] == [r["parent"] for r in found]
    state = json.loads((lab / "train" / "mixed" / "state.json").read_text())
    assert list(report.population) == [m["iteration"] for m in state["population"]]
    assert [r.iteration for r in report.rows if r.rank] == sorted(report.population)
    assert report.rows[report.best_iteration].rank == 1
    assert report.rows[1].val["total_return"] == found[1]["val_return"]


def test_failure_taxonomy_counts_and_shares_by_status_and_exception_type(mixed: tuple) -> None:
    taxonomy = mixed[0].taxonomy
    assert (taxonomy.iterations, taxonomy.failures) == (10, 5)
    by_status = {s.label: (s.count, s.share) for s in taxonomy.by_status}
    assert by_status["ok"] == (5, 0.5) and by_status["runtime_error"] == (2, 0.2)
    by_error = {s.label: (s.count, s.share) for s in taxonomy.by_error}
    assert by_error == {
        "KeyError": (2, 0.4),
        "SyntaxError": (1, 0.2),
        "look-ahead": (1, 0.2),
        "unparseable reply": (1, 0.2),
    }
    assert taxonomy.by_error[0].label == "KeyError"


def test_dsr_and_psr_use_the_best_daily_validation_returns_and_every_strategy_that_ran(
    mixed: tuple, lab: Path, small_data: Path, sandbox_pool: SandboxPool
) -> None:
    report, _ = mixed
    run = lab / "train" / "mixed"
    found = records(run)
    ok = [r for r in found if r["status"] == "ok"]
    best = found[report.best_iteration]
    data = load_prepared(small_data)
    evaluation = evaluate_block(best["block"], data, ("train", "val"), settings_of(run), pool=sandbox_pool)
    moments = sharpe_moments(evaluation.curves["val"].equity.pct_change().to_numpy())
    var = float(np.var([r["windows"]["val"]["sharpe"] for r in ok], ddof=1)) / 252  # annualised → per day
    o = report.overfitting
    # Ran: 5 ok, the KeyError block (twice, one program) and the look-ahead; not the SyntaxError nor the reply
    # without code.
    assert (o.n_trials, o.n_ok_trials) == (7, 5) and o.n_obs == moments.n_obs == 250
    assert o.dsr == pytest.approx(
        deflated_sharpe_ratio(moments.sr, moments.n_obs, moments.skew, moments.kurtosis, 7, var)
    )
    assert o.dsr_ok_only == pytest.approx(
        deflated_sharpe_ratio(moments.sr, moments.n_obs, moments.skew, moments.kurtosis, 5, var)
    )
    assert o.dsr < o.dsr_ok_only  # the failures that ran deflate it further
    assert o.psr == pytest.approx(
        probabilistic_sharpe_ratio(moments.sr, 0.0, moments.n_obs, moments.skew, moments.kurtosis)
    )
    assert o.sharpe == pytest.approx(best["windows"]["val"]["sharpe"])
    assert o.kurtosis > 0 and o.dsr < o.psr  # seven trials deflate the Sharpe's credibility
    said = next(f.meaning for f in report.figures if f.key == "dsr")
    assert "N = 7 distinct strategies that ran, of which 5 ok" in said and num(o.dsr_ok_only) in said


def test_pbo_is_computed_over_the_train_and_validation_returns_of_every_ok_trial(
    mixed: tuple, lab: Path, small_data: Path, sandbox_pool: SandboxPool
) -> None:
    report, _ = mixed
    run = lab / "train" / "mixed"
    data = load_prepared(small_data)
    columns = []
    for record in (r for r in records(run) if r["status"] == "ok"):
        curves = evaluate_block(record["block"], data, ("train", "val"), settings_of(run), pool=sandbox_pool).curves
        columns.append(np.concatenate([curves[w].equity.pct_change().to_numpy()[1:] for w in ("train", "val")]))
    expected = pbo_cscv(np.column_stack(columns), n_blocks=16)
    assert report.overfitting.pbo == pytest.approx(expected.pbo) and report.overfitting.pbo_trials == 5
    assert {f.key for f in report.figures} >= {"dsr", "psr", "pbo", "sharpe_path", "holdout"}
    assert all(f.meaning.endswith(".") and len(f.meaning) > 40 for f in report.figures)


def test_degradation_follows_the_best_from_train_to_validation_to_test(mixed: tuple) -> None:
    report, _ = mixed
    path = report.overfitting.sharpe_path
    row = report.rows[report.best_iteration]
    test = report.holdout.evaluations[report.best_iteration].windows["test"]["sharpe"]
    assert (path.train, path.val, path.test) == (row.train["sharpe"], row.val["sharpe"], test)
    assert path.test_minus_val == pytest.approx(test - row.val["sharpe"])


def test_spend_adds_tokens_and_time_of_the_committed_iterations(mixed: tuple) -> None:
    spend = mixed[0].spend
    assert (spend.prompt_tokens, spend.completion_tokens, spend.model_calls) == (9000, 1220, 9)
    assert spend.interrupted_calls == 0 and spend.model_s > 0 and spend.eval_s > 0 and spend.wall_s > 0


def test_report_files_are_real_pngs_and_a_self_contained_html(mixed: tuple) -> None:
    report, files = mixed
    names = {p.name for p in files}
    assert {EQUITY_PNG, OBJECTIVE_PNG, HTML_FILE, "report.json"} <= names
    for name in (EQUITY_PNG, OBJECTIVE_PNG):
        png = (report.path / name).read_bytes()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    page = (report.path / HTML_FILE).read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "http://" not in page and "https://" not in page
    assert "Deflated Sharpe Ratio" in page and "Failures by type" in page and "KeyError" in page
    saved = json.loads((report.path / "report.json").read_text())["summary"]
    assert saved["iterations"] == 10 and saved["dsr"] == pytest.approx(report.overfitting.dsr)


def test_summary_is_flat_key_values(mixed: tuple) -> None:
    values = summary(mixed[0])
    assert values["ok_share"] == 0.5 and values["top_failure"] == "KeyError 40%"
    assert values["holdout_first_revealed_at"] == "2030-01-02T03:04:05+00:00"
    assert all(isinstance(v, str | int | float | bool | None) for v in values.values())


def test_a_killed_run_is_reported_and_its_lost_model_calls_are_counted(lab: Path) -> None:
    run = copy_run(lab / "train" / "mixed", "killed")
    state = json.loads(run.state_path.read_text())
    run.write_json(run.state_path, {**state, "status": "running", "stop_reason": None})
    run.journal("iteration_started", iteration=10, parent=3)
    run.journal(
        "model_reply", iteration=10, finish_reason="stop", prompt_tokens=500, completion_tokens=70, latency_s=2.5
    )
    (run.path / "iter_10_response.md").write_text("debris of the killed iteration")
    report = build_report(run, holdout=False)
    assert report.iterations == 10 and report.state == "stopped"
    assert (report.spend.interrupted_calls, report.spend.interrupted_tokens) == (1, 570)
    assert report.spend.prompt_tokens == 9500 and report.spend.model_calls == 10
    assert not (run.path / "holdout.json").exists() and report.curves.test_start is None


def test_lost_reply_of_a_redone_iteration_counts_once() -> None:
    journal = [
        {"event": "iteration_started", "iteration": 1},
        {"event": "model_reply", "iteration": 1, "prompt_tokens": 10, "completion_tokens": 5, "latency_s": 1.0},
        {"event": "iteration_started", "iteration": 1},  # resumed after a kill: the first reply was lost
        {"event": "model_reply", "iteration": 1, "prompt_tokens": 11, "completion_tokens": 6, "latency_s": 1.0},
        {"event": "iteration_committed", "iteration": 1},
    ]
    committed = [
        Attempt(iteration=0, status=Status.OK),
        Attempt(iteration=1, status=Status.OK, turns=(Turn(prompt_tokens=11, completion_tokens=6, latency_s=1.0),)),
    ]
    spend = spend_of(committed, journal, None, active=False)
    assert (spend.prompt_tokens, spend.completion_tokens, spend.interrupted_calls, spend.model_calls) == (21, 11, 1, 2)


def test_a_run_without_any_ok_iteration_still_reports(lab: Path, tiny_data: Path) -> None:
    broken = lab / "broken_block.py"
    broken.write_text(
        "def generate_features(df):\n    return df\n\n\n"
        "def strategy_logic(row):\n    return 1 if row['nope'] > 0 else 0\n"
    )
    run = RunDir(make_run(lab, tiny_data, "no-ok", [], max_iter=1, start_from=str(broken)))
    report = build_report(run)
    write_files(report)
    assert (report.ok, report.best_iteration, report.overfitting.dsr, report.overfitting.pbo) == (0, None, None, None)
    assert report.taxonomy.by_error[0].label == "KeyError" and report.taxonomy.by_error[0].share == 1.0
    assert not report.holdout.looked and not (run.path / "holdout.json").exists()
    assert (run.path / EQUITY_PNG).read_bytes().startswith(PNG_SIGNATURE)


def test_a_single_iteration_run_has_no_selection_to_deflate(lab: Path, tiny_data: Path) -> None:
    run = RunDir(make_run(lab, tiny_data, "single", [], max_iter=1))
    report = build_report(run)
    write_files(report)
    o = report.overfitting
    assert report.iterations == 1 and o.n_trials == 1 and o.dsr == pytest.approx(o.psr)  # one trial: E[max SR] = 0
    assert o.pbo is None and any("PBO needs at least 4" in n for n in o.notes)


def test_a_model_copying_one_strategy_shows_collapse(lab: Path, tiny_data: Path) -> None:
    start = lab / "copy_start.py"
    start.write_text(sma_block(20, 100))
    # Novelty off: with it, the copies would be refused as duplicates before they could fill the population.
    path = make_run(
        lab,
        tiny_data,
        "copies",
        [good(20, 100)] * 3,
        start_from=str(start),
        novelty=False,
        collapse_window=2,
    )
    report = build_report(RunDir(path), holdout=False)
    d = report.diversity
    assert (d.candidates, d.distinct, d.copies_of_start) == (4, 1, 3)
    assert len(d.population) == 3 and d.mean_correlation == 1.0 and d.collapsed
    assert summary(report)["diversity_collapsed"] is True
    # Two crossovers in a row (iterations 0 and 1) nudged the prompts of 2 and 3, and both stayed crossovers.
    (section,) = collapse_sections(report)
    assert section.rows[0][:4] == ("moving average + crossover", "1", "2", "2 of 2 ok still the same")
    assert summary(report)["search_collapses"] == 1


def test_data_that_is_not_the_runs_is_refused(lab: Path) -> None:
    other = lab / "other"
    other.mkdir()
    frame = load_bundled("sp500")
    frame[frame.index >= "2015-01-01"].to_csv(other / "spx.csv")
    prepare_data(csv=other / "spx.csv", data_dir=other / "data", val_start="2017-01-01", test_start="2018-01-01")
    with pytest.raises(DataError, match="not the data run 'mixed' used"):
        build_report(RunDir(lab / "train" / "mixed"), data_dir=other / "data", holdout=False)
    with pytest.raises(DataError, match="pass --data"):
        build_report(RunDir(lab / "train" / "mixed"), data_dir=lab / "nowhere", holdout=False)


def test_a_random_policy_run_reports_its_policy_varied_strategies_and_no_model_spend(
    lab: Path, tiny_data: Path
) -> None:
    settings = RunSettings(max_iter=8, max_fails=50, seed=3, policy="random", data_dir=str(tiny_data))
    result = start_run(
        settings, None, RecordingReporter(), prompts=load_prompt_files(lab), name="random", root=lab / "train"
    )
    report = build_report(RunDir(result.path))
    write_files(report)
    assert (report.policy, report.endpoint) == ("random", "—") and "policy random" in header_lines(report)[0]
    assert (report.spend.model_calls, report.spend.prompt_tokens, report.spend.completion_tokens) == (0, 0, 0)
    assert (
        report.diversity.distinct >= 4 and len(report.diversity.family_counts) >= 3 and not report.diversity.collapsed
    )
    assert (result.path / HTML_FILE).stat().st_size > 10_000


def test_text_from_candidates_and_runs_is_printed_verbatim_never_as_rich_markup() -> None:
    # Exception messages come from model code: pandas' own KeyError says "... are in the [columns]", and a
    # "[/x]" would make rich raise MarkupError; tables must show such text as it is, and never crash on it.
    from rich.console import Console

    from autotrade.report.compute import _damaged
    from autotrade.report.render import Section, compare_table, rich_table, runs_table

    texts = ("None of [Index(['foo'], dtype='object')] are in the [columns]", "closing [/x] tag", "a [bold]b[/bold] c")
    console = Console(file=io.StringIO(), width=400)
    console.print(rich_table(Section("t", ("why",), tuple((t,) for t in texts), note=" | ".join(texts))))
    out = console.file.getvalue()
    assert all(out.count(t) == 2 for t in texts)  # once in the rows, once in the note

    run = _damaged(RunDir(Path("/nonexistent/run[x]")), "bad [/y] json")
    console = Console(file=io.StringIO(), width=400)
    console.print(runs_table([run], "runs"))
    console.print(compare_table([run, run]))
    out = console.file.getvalue()
    assert "bad [/y] json" in out and "run[x]" in out
