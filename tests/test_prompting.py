"""Prompt files, placeholder rendering, and what a rendered prompt tells the model."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from autotrade.errors import ConfigError
from autotrade.evaluation.objectives import format_score
from autotrade.propose.prompts import (
    PromptContext,
    build_prompt,
    describe_columns,
    describe_outcome,
    describe_population,
    engine_rules,
    load_prompt_files,
    packaged_text,
    render,
    sample_rows,
    trim_traceback,
)
from autotrade.research.attempt import Attempt
from autotrade.status import Status

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["program.md", "prompt_template.md"])
def test_repo_prompts_equal_the_packaged_defaults(name: str) -> None:
    assert (REPO / "prompts" / name).read_text(encoding="utf-8") == packaged_text(name)


def test_prompts_in_the_working_directory_override_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "program.md").write_text("my rules for {{objective}}")
    files = load_prompt_files(tmp_path)
    assert files.program == "my rules for {{objective}}"
    assert files.template == packaged_text("prompt_template.md")
    assert files.template_source == "packaged prompt_template.md"


def test_without_a_prompts_folder_the_packaged_defaults_are_used(tmp_path: Path) -> None:
    files = load_prompt_files(tmp_path)
    assert (files.program, files.template) == (packaged_text("program.md"), packaged_text("prompt_template.md"))


def test_an_unknown_placeholder_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"my\.md: unknown placeholder\(s\) \{\{colums\}\}"):
        render("see {{colums}}", {"columns": "x"}, "my.md")


def test_substituted_text_is_never_expanded_again() -> None:
    out = render(
        "{{parent_code}} and {{learnings}}", {"parent_code": "d = {'{{learnings}}': 1}", "learnings": "L"}, "t"
    )
    assert out == "d = {'{{learnings}}': 1} and L"


def frame() -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.date_range("2001-01-02", periods=8, freq="B"), name="Date")
    data = {c: [float(i) for i in range(8)] for c in ("Open", "High", "Low", "Close", "Adj Close", "Volume")}
    return pd.DataFrame(data, index=index)


def test_columns_are_listed_with_dtypes() -> None:
    assert describe_columns(frame()).splitlines()[4] == "- `Adj Close`: float64"


def test_sample_rows_are_the_first_rows_only() -> None:
    text = sample_rows(frame())
    assert "2001-01-02" in text and "2001-01-08" in text and "2001-01-09" not in text


@pytest.mark.parametrize(("fill", "phrase"), [("next-open", "bar t+1's open"), ("close", "same bar's close")])
def test_engine_rules_state_fill_timing_and_costs(fill: str, phrase: str) -> None:
    text = engine_rules(fill, 2.5)
    assert phrase in text and "2.5 basis points" in text and "1 = buy" in text and "`pd`" in text


def record(i: int, status: str = "ok", **extra: object) -> Attempt:
    windows = {
        "train": {
            "total_return": 0.5,
            "sharpe": 0.8,
            "max_drawdown": -0.2,
            "num_trades": 30,
            "exposure": 0.6,
            "buy_and_hold_return": 0.9,
        },
        "val": {
            "total_return": 0.1,
            "sharpe": 1.1,
            "max_drawdown": -0.1,
            "num_trades": 4,
            "exposure": 0.5,
            "buy_and_hold_return": 0.2,
        },
    }
    return Attempt(
        iteration=i,
        parent=i - 1 if i else None,
        status=Status(status),
        objective=0.1,
        windows=windows if status == "ok" else {},
        hypothesis=f"Idea {i}\nmore",
        **extra,
    )


def test_population_shows_train_and_validation_metrics_and_buy_and_hold() -> None:
    text = describe_population([record(2), record(0)], "val_return", partial(format_score, "val_return", missing="n/a"))
    assert text.startswith("1. iteration 2 — val_return +10.00%")
    assert "train: return +50.00%, Sharpe 0.80" in text and "validation: return +10.00%, Sharpe 1.10" in text
    assert "Buy-and-hold for comparison: train +90.00%, validation +20.00%." in text


def test_a_failed_outcome_shows_status_message_and_the_end_of_the_traceback() -> None:
    tb = (
        "Traceback (most recent call last):\n"
        + "".join(f'  File "x", line {n}\n' for n in range(100))
        + "KeyError: 'RSI_14'"
    )
    text = describe_outcome(
        record(5, status="runtime_error", message="KeyError: 'RSI_14'", error_type="KeyError", traceback=tb)
    )
    assert "Iteration 5 (parent 4) FAILED with status `runtime_error` (KeyError): KeyError: 'RSI_14'" in text
    assert text.count("line ") <= 12 and "KeyError: 'RSI_14'\n```" in text


def test_trimmed_traceback_keeps_the_last_lines_within_the_limit() -> None:
    tb = "\n".join(f"line {n}" for n in range(500))
    out = trim_traceback(tb, lines=5, chars=1000)
    assert out == "\n".join(f"line {n}" for n in range(495, 500))


def test_the_rendered_prompt_holds_every_part() -> None:
    context = PromptContext(
        iteration="4",
        last_iteration="9",
        objective="val_return",
        objective_description="the validation return",
        columns=describe_columns(frame()),
        sample_rows=sample_rows(frame()),
        engine_rules=engine_rules("next-open", 2.0),
        parent_iteration="2",
        parent_code="def generate_features(df):\n    return df",
        population="POPULATION",
        last_outcome="LAST",
        learnings="LEARNED",
    )
    text = build_prompt(load_prompt_files(Path("/nonexistent")), context)
    for part in (
        "**val_return**: the validation return",
        "- `Close`: float64",
        "2001-01-02",
        "bar t+1's open",
        "POPULATION",
        "LAST",
        "LEARNED",
        "iteration 2",
        "def generate_features(df):",
        "ONE ```python block",
    ):
        assert part in text, part
    assert "{{" not in text
