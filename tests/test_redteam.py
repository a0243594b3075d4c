"""Red team: the trust boundary attacked the way a model that has read the code would, one class at a time.

Every attack asserts that its effect did not happen: a canary file that must not appear, a result
that must not be `ok`, a run that must keep going and resume, a terminal sequence that must not
reach the screen, a file or a prompt. Vetting is switched off where the attack is on a later layer.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import synthetic_ohlcv
from openai_server import OpenAIServer, Reply
from test_loop import answer, records, sma_block, start
from typer.testing import CliRunner

from autotrade.candidate import BLOCK_END, baseline_source, extract_block, runnable_source
from autotrade.cli.app import app
from autotrade.cli.research import PlainReporter
from autotrade.data.prepared import load_prepared
from autotrade.errors import CandidateError, ConfigError
from autotrade.evaluation import evaluate as evaluation
from autotrade.evaluation.evaluate import EvalSettings, evaluate_block
from autotrade.research import loop
from autotrade.sandbox import launch
from autotrade.sandbox.pool import Limits, SandboxPool, run_candidate
from autotrade.sandbox.vet import VettedBlock

ESC = "\x1b"
CLIPBOARD = "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # OSC 52: writes the terminal's clipboard


@pytest.fixture
def unvetted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip vetting, so that the attack meets the sandbox's later layers alone."""
    monkeypatch.setattr(evaluation, "vet_block", lambda block, *_: VettedBlock(block, None, (), ()))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_ohlcv(400, 11, "2012-01-02")


def canary_block(canary: Path, where: str) -> str:
    """A block whose code, run anywhere but the sandbox, writes `canary` from `where` (top level, default, body)."""
    payload = f"pd.compat.sys.modules['builtins'].open({str(canary)!r}, 'w').write('pwned')"
    top = payload if where == "top_level" else ""
    default = f", hook={payload}" if where == "default_argument" else ""
    return f"{top}\ndef generate_features(df{default}):\n    return df\n\ndef strategy_logic(row):\n    return 0\n"


# -- 1. a normal user's run evaluates its candidates ------------------------------------------------------


def test_the_readme_main_job_evaluates_its_baseline_for_whoever_runs_it(
    tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["run", "--policy", "random", "--max-iter", "3", "--quiet", "--seed", "1", "--data", str(small_data)]
    )
    assert result.exit_code == 0, result.output
    statuses = [r["status"] for r in records(next((tmp_path / "train").iterdir()))]
    assert statuses[0] == "ok" and "runtime_error" not in statuses, statuses


@pytest.fixture
def broken_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A sandbox server whose workers all fail their set-up (as on a machine that refuses a layer mid-way)."""

    start_fresh = launch.start_fresh

    def broken(faults: frozenset[str] = frozenset()) -> launch.Server:
        return start_fresh(faults | {"child_dumpable"})  # every pool's children then fail their set-up

    monkeypatch.setattr(launch, "start_fresh", broken)
    yield


def test_a_broken_sandbox_stops_the_run_before_it_starts_with_one_line(
    broken_sandbox: None, tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["run", "--policy", "random", "--max-iter", "5", "--quiet", "--data", str(small_data)]
    )
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sandbox" in lines[0]
    assert not (tmp_path / "train").exists()  # no run left behind to spend iterations on


def test_a_sandbox_that_breaks_during_a_run_stops_it_resumably(
    broken_sandbox: None, tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loop, "sandbox_layers", lambda reporter, pool: {})  # it held when the run started
    result = CliRunner().invoke(
        app, ["run", "--policy", "random", "--max-iter", "5", "--quiet", "--data", str(small_data), "--name", "r"]
    )
    assert result.exit_code == 1
    assert any(line.startswith("error:") and "sandbox" in line for line in result.stderr.splitlines())
    state = json.loads((tmp_path / "train" / "r" / "state.json").read_text())
    assert (state["next_iteration"], state["status"], state["stop_reason"]) == (0, "stopped", "sandbox_error")


def test_doctor_fails_when_the_sandbox_cannot_evaluate(
    broken_sandbox: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["doctor", "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 1
    assert any(line.startswith("FAIL") and "sandbox evaluation" in line for line in result.stdout.splitlines())


# -- 2. files the product writes never run model code outside the sandbox ---------------------------------


@pytest.mark.parametrize("where", ["top_level", "default_argument"])
def test_running_or_importing_a_written_trade_py_never_runs_its_block_here(
    where: str, tmp_path: Path, prepared_dir: Path
) -> None:
    canary = tmp_path / "canary"
    # Written as the product writes files, but with a block that never went through vetting.
    trade_py = tmp_path / "best_trade.py"
    trade_py.write_text(runnable_source(baseline_source(), canary_block(canary, where)))
    env = {**os.environ, "AUTOTRADE_DATA": str(prepared_dir)}
    ran = subprocess.run([sys.executable, str(trade_py)], env=env, capture_output=True, text=True, timeout=120)
    imported = subprocess.run(
        [sys.executable, "-c", "import best_trade"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert not canary.exists()
    assert ran.returncode == 1 and "rejected" in ran.stderr  # handed to the sandbox, whose vetting refused it
    assert imported.returncode == 1 and "cannot be imported" in imported.stderr


def test_a_starting_file_that_would_run_the_block_before_the_guard_is_refused() -> None:
    skeleton = baseline_source().replace("import math\n", 'import math\nX = """\n', 1)
    skeleton = skeleton.replace(
        BLOCK_END, BLOCK_END + '\n"""', 1
    )  # the block sits inside a string the block could close
    with pytest.raises(ConfigError, match="top level"):
        runnable_source(skeleton, 'x = 1\n"""\nprint("escaped")\n"""')


def test_a_rejected_block_is_kept_as_text_and_never_becomes_a_py_file(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    canary = tmp_path / "canary"
    openai_server.script([Reply(answer(canary_block(canary, "top_level"), "Escape"))])
    result, _ = start(openai_server, tmp_path, small_data, max_iter=2)
    run = result.path
    assert records(run)[1]["status"] == "rejected"
    assert not (run / "iter_1_trade.py").exists() and (run / "iter_1_rejected.txt").is_file()
    assert str(canary) not in (run / "trade.py").read_text()  # the latest .py is the latest block that vets
    assert not canary.exists()


# -- 3. no vetted path to eval, a writer, builtins or a module ---------------------------------------------


DISPATCH_ESCAPES = {
    "cython_function_globals": "b = pd.Timestamp.strftime.func_globals['_' * 2 + 'builtins' + '_' * 2]",
    "series_groupby_filter_by_name": "df.groupby(df['Close'] > 0)['Close'].filter('to_' + 'csv', True, 'x.csv')",
    "apply_with_built_name": "df.apply('ev' + 'al', expr='Close * 0')",
    "agg_with_variable_name": "name = ''.join(['qu', 'ery'])\n    df.agg(name, expr='Close > 0')",
    "transform_with_f_string": "part = 'ev'\n    df['Close'].to_frame().transform(f'{part}al', expr='Close')",
}


@pytest.mark.parametrize("name", list(DISPATCH_ESCAPES))
def test_paths_to_builtins_eval_or_a_writer_are_rejected_before_they_run(
    name: str, prepared_dir: Path, sandbox_pool: SandboxPool
) -> None:
    block = (
        f"def generate_features(df):\n    {DISPATCH_ESCAPES[name]}\n    return df\n\n"
        "def strategy_logic(row):\n    return 0\n"
    )
    evaluation_ = evaluate_block(
        block, load_prepared(prepared_dir), settings=EvalSettings(lookahead=False), pool=sandbox_pool
    )
    assert evaluation_.status == "rejected", evaluation_.message


# -- 4. a candidate cannot forge what the harness believes ------------------------------------------------


def forging_block(when: str) -> str:
    """Leaks tomorrow's close; in `when` runs it writes a forged probe reply on the result pipe and exits."""
    condition = {"prefix": "len(df) < FULL", "full": "len(df) == FULL"}[when]
    return textwrap.dedent(f"""
        FULL = 400

        def generate_features(df):
            df['tomorrow'] = df['Close'].shift(-1)
            if {condition}:
                os = pd.io.common.os
                reply = b'{{"status": "probe", "layers": {{}}}}'
                os.write(4, len(reply).to_bytes(4, 'little') + (0).to_bytes(8, 'little') + reply)
                os._exit(0)
            return df

        def strategy_logic(row):
            return 1 if row['tomorrow'] > row['Close'] else -1
    """)


def test_prefix_runs_that_forge_a_probe_reply_are_look_ahead_not_ok(
    frame: pd.DataFrame, sandbox_pool: SandboxPool
) -> None:
    with pytest.raises(CandidateError) as caught:
        run_candidate(forging_block("prefix"), frame, [100, 200, 300], Limits(timeout_s=20), pool=sandbox_pool)
    assert caught.value.status == "lookahead"


def test_a_full_run_that_forges_a_probe_reply_is_a_typed_failure_not_a_crash(
    frame: pd.DataFrame, sandbox_pool: SandboxPool
) -> None:
    with pytest.raises(CandidateError) as caught:
        run_candidate(forging_block("full"), frame, [100, 200], Limits(timeout_s=20), pool=sandbox_pool)
    assert caught.value.status == "runtime_error" and "malformed" in str(caught.value)


def test_a_forged_reply_neither_ends_the_run_nor_blocks_its_resume(
    unvetted: None, openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    forged = forging_block("full").replace("FULL = 400", f"FULL = {len(load_prepared(small_data).research_frame())}")
    openai_server.script([Reply(answer(forged, "Forge")), Reply(answer(sma_block(5, 20), "SMA"))])
    result, _ = start(openai_server, tmp_path, small_data, max_iter=3)
    assert (result.status, result.iterations) == ("finished", 3)
    assert [r["status"] for r in records(result.path)] == ["ok", "runtime_error", "ok"]


# -- 5. smaller holes --------------------------------------------------------------------------------------


def test_one_wall_clock_budget_covers_all_of_a_candidates_runs(frame: pd.DataFrame, sandbox_pool: SandboxPool) -> None:
    block = (
        "def generate_features(df):\n    start = pd.Timestamp.now()\n"
        "    while (pd.Timestamp.now() - start).total_seconds() < 1.2:\n        pass\n    return df\n\n"
        "def strategy_logic(row):\n    return 0\n"
    )
    started = time.monotonic()
    with pytest.raises(CandidateError) as caught:
        run_candidate(block, frame, [50, 100, 150, 200, 250], Limits(timeout_s=2.5), pool=sandbox_pool)
    assert caught.value.status == "timeout"
    assert time.monotonic() - started < 2.5 + 1.5  # six runs of 1.2 s each would take 3.6 s at two at a time


def test_control_sequences_from_a_candidate_reach_no_terminal_record_or_prompt(
    openai_server: OpenAIServer, tmp_path: Path, small_data: Path
) -> None:
    printing = (
        "def generate_features(df):\n    print('hi' + chr(27) + ']52;c;ZWNobw==' + chr(7))\n"
        "    df['fast'] = df['Close'].rolling(5).mean()\n    return df\n\n"
        "def strategy_logic(row):\n    if row['fast'] > row['Close']:\n        raise ValueError('x' + chr(27) + "
        "'[2J')\n"
        "    return 1\n"
    )
    hostile_reply = answer(printing, f"Title{CLIPBOARD}\n\nHidden \u202etext{ESC}[8m here")
    openai_server.script([Reply(hostile_reply), Reply(answer(sma_block(5, 20), "SMA"))])
    terminal = io.StringIO()  # what the CLI's --quiet reporter prints
    result, _ = start(openai_server, tmp_path, small_data, max_iter=3, reporter=PlainReporter(terminal))
    run = result.path
    printed = terminal.getvalue()
    assert "iter 2/2" in printed
    assert ESC not in printed and "\u202e" not in printed
    for path in run.iterdir():
        text = path.read_text(encoding="utf-8")
        assert ESC not in text and "\x07" not in text and "\u202e" not in text, path.name
    prompt = openai_server.chat_requests[-1].body["messages"][-1]["content"]
    assert ESC not in prompt and "\u202e" not in prompt
    assert "\\x1b" in (run / "learnings.md").read_text()  # shown as a visible escape, not dropped


def test_a_column_name_holding_an_escape_sequence_is_refused(frame: pd.DataFrame, sandbox_pool: SandboxPool) -> None:
    block = (
        "def generate_features(df):\n    df['a' + chr(27) + '[31m'] = 1.0\n    return df\n\n"
        "def strategy_logic(row):\n    return 0\n"
    )
    with pytest.raises(CandidateError) as caught:
        run_candidate(block, frame, (), Limits(timeout_s=20), pool=sandbox_pool)
    assert "printable" in str(caught.value) and ESC not in str(caught.value)


def test_a_long_dash_comment_in_the_block_survives_the_written_file() -> None:
    block = extract_block(baseline_source()) + "# " + "-" * 70 + "\nCUT = 1\n"
    written = runnable_source(baseline_source(), block)
    assert extract_block(written) == block


def test_a_block_holding_a_delimiter_line_is_rejected(prepared_dir: Path, sandbox_pool: SandboxPool) -> None:
    block = extract_block(baseline_source()) + BLOCK_END + "\nX = 1\n"
    assert evaluate_block(block, load_prepared(prepared_dir), pool=sandbox_pool).status == "rejected"


def test_an_unreadable_env_file_is_one_line_from_doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes("# caf\xe9 in Latin-1\nOPENAI_MODEL=x\n".encode("latin-1"))
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ".env" in lines[0]
