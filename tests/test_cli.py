"""The command line: exit codes, one-line errors, and what each command prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autotrade.cli.app import app
from autotrade.evaluation.objectives import OBJECTIVES
from autotrade.propose.policies import POLICIES

runner = CliRunner()


def flat(text: str) -> str:
    """Rich output as one line: panel borders dropped, wrapped lines joined."""
    return " ".join(text.replace("│", " ").split())


def test_backtest_without_prepared_data_says_to_run_prepare(tmp_path: Path) -> None:
    result = runner.invoke(app, ["backtest", "--data", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no prepared data in {tmp_path / 'none'}: run `autotrade prepare` first"
    ]


def test_backtest_json_reports_train_and_validation_with_settings(prepared_dir: Path) -> None:
    result = runner.invoke(app, ["backtest", "--json", "--data", str(prepared_dir), "--cost-bps", "5"])
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record["windows"]) == {"train", "val"}
    assert record["settings"]["cost_bps"] == 5.0
    assert record["windows"]["val"]["total_costs"] > 0


def test_backtest_table_shows_buy_and_hold_beside_the_strategy(prepared_dir: Path) -> None:
    result = runner.invoke(app, ["backtest", "--data", str(prepared_dir)])
    assert result.exit_code == 0, result.stderr
    assert "val B&H" in result.stdout and "Sharpe" in result.stdout


def test_looking_at_the_test_window_prints_a_reminder(prepared_dir: Path) -> None:
    result = runner.invoke(app, ["backtest", "--window", "test", "--json", "--data", str(prepared_dir)])
    assert result.exit_code == 0, result.stderr
    assert "held-out test window" in result.stderr
    assert set(json.loads(result.stdout)["windows"]) == {"test"}


def test_block_without_strategy_logic_fails_with_one_line(prepared_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "half.py"
    path.write_text("def generate_features(df):\n    return df\n")
    result = runner.invoke(app, ["backtest", str(path), "--data", str(prepared_dir)])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "strategy_logic" in result.stderr


def test_unknown_fill_is_a_usage_error() -> None:
    result = runner.invoke(app, ["backtest", "--fill", "sideways"])
    assert result.exit_code == 2
    assert "sideways" in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "backtest", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "DataError"


def test_prepare_offline_writes_the_split_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = runner.invoke(app, ["prepare", "--offline", "--ticker", "nasdaq", "--data", str(data_dir)])
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in data_dir.iterdir()} >= {"train.csv", "val.csv", "test.csv", "meta.json", "nasdaq.csv"}


def test_prepare_with_a_broken_csv_names_the_file_and_line(tmp_path: Path) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,100\nnot-a-date,1,2,0.5,1.5,100\n")
    result = runner.invoke(app, ["prepare", "--csv", str(csv), "--data", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "prices.csv" in result.stderr and "line 3" in result.stderr
    assert not (tmp_path / "data" / "meta.json").exists()


def test_help_does_not_import_heavy_modules() -> None:
    heavy = "{'pandas', 'openai', 'yfinance', 'matplotlib'}"
    probe = f"import sys, autotrade.cli.app; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_help_lists_the_registered_choices_without_importing_numpy_pandas_or_openai() -> None:
    # The --objective and --policy choices and their help come from the registries, which must stay cheap to read.
    probe = (
        "import sys; sys.argv = ['autotrade', 'run', '--help']\n"
        "from autotrade.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted({'numpy', 'pandas', 'openai'} & set(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "300"}
    )
    assert done.stderr.strip() == "[]"
    for registry in (OBJECTIVES, POLICIES):
        for name, entry in registry.entries.items():
            assert f"{name} ({entry.summary})" in flat(done.stdout)


def test_a_choice_no_registry_holds_is_a_usage_error_naming_the_choices() -> None:
    result = runner.invoke(app, ["run", "--objective", "val_sortino"])
    assert result.exit_code == 2
    assert "unknown objective 'val_sortino'; choose one of val_return, val_sharpe, robust, rubric" in flat(
        result.stderr
    )
    result = runner.invoke(app, ["run", "--policy", "oracle"])
    assert result.exit_code == 2 and "unknown policy 'oracle'; choose one of model, random" in flat(result.stderr)


def test_infinite_eval_timeout_is_one_line_not_a_traceback(prepared_dir: Path) -> None:
    result = runner.invoke(app, ["backtest", "--data", str(prepared_dir), "--eval-timeout", "inf"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "timeout" in result.stderr


ENV_FILES = {
    "latin-1": ("OPENAI_MODEL=m\n# café\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 2)"),
    "utf-16": ("OPENAI_MODEL=m\n".encode("utf-16"), "saved as UTF-16 (or holds NUL bytes)"),
    "utf-16 without BOM": ("OPENAI_MODEL=m\n".encode("utf-16-le"), "saved as UTF-16 (or holds NUL bytes)"),
}
ENDPOINT_COMMANDS = {"run": ["run", "--max-iter", "1"], "resume": ["resume"], "doctor": ["doctor"]}


@pytest.mark.parametrize("encoding", ENV_FILES)
@pytest.mark.parametrize("command", ENDPOINT_COMMANDS)
def test_env_file_in_another_encoding_is_one_line_naming_it(
    command: str, encoding: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content, said = ENV_FILES[encoding]
    (tmp_path / ".env").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ENDPOINT_COMMANDS[command])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / '.env'}: {said}: save it as UTF-8 text"]


def test_starting_from_a_binary_file_is_one_line(prepared_dir: Path, tmp_path: Path) -> None:
    binary = tmp_path / "trade.py"
    binary.write_bytes(bytes(range(256)))
    result = runner.invoke(
        app, ["run", "--policy", "random", "--max-iter", "1", "--data", str(prepared_dir), "--from", str(binary)]
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {binary}: not UTF-8 text (byte 0x80 at position 128): give a trade.py or a file holding only the "
        "agent block"
    ]


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_cost_bps_that_is_not_a_finite_number_says_so(value: str) -> None:
    result = runner.invoke(app, ["backtest", "--cost-bps", value])
    assert result.exit_code == 2
    assert "must be a finite number" in " ".join(result.stderr.split())


def test_a_run_that_ends_without_any_population_member_says_there_is_no_best(
    prepared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(
        "def generate_features(df):\n    return df\n\n\ndef strategy_logic(row):\n    return 1 if row['nope'] > 0 "
        "else 0\n"
    )
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        [
            "run",
            "--policy",
            "random",
            "--max-iter",
            "1",
            "--quiet",
            "--name",
            "none",
            "--data",
            str(prepared_dir),
            "--from",
            str(broken),
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert (
        "run none finished: reached --max-iter after 1 iterations; no iteration entered the population, so there is "
        "no best strategy" in result.stdout
    )
    assert "best_trade.py" not in result.stdout and not (tmp_path / "train" / "none" / "best_trade.py").exists()


@pytest.mark.parametrize("command", ["run", "doctor"])
@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/v1", "http://127.0.0.1:abc/v1", "http://[::1/v1"])
def test_a_malformed_base_url_is_one_line_not_a_traceback(command: str, url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [command, "--base-url", url, "--data", str(tmp_path)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: base URL {url!r}: "), result.stderr


def test_resuming_a_run_whose_config_names_an_unregistered_policy_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "train" / "old"
    shutil.copytree(Path(__file__).parent / "fixtures" / "run_b5a6da9", run)
    config = json.loads((run / "config.json").read_text())
    config["policy"] = config["settings"]["policy"] = "oracle"  # hand-edited, or a policy this version lacks
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["resume", "old", "--quiet"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        'error: train/old/config.json: settings.policy is "oracle": choose one of model, random'
    ]
