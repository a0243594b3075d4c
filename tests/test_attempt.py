"""An iteration's Attempt: iter_<i>_results.json typed, its JSON form the file's keys, values and order."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from legacy_run import FIXTURE, fixture_records

from autotrade.errors import ConfigError
from autotrade.research.attempt import Attempt, Turn
from autotrade.research.rundir import RunDir
from autotrade.status import Status


@pytest.mark.parametrize("raw", fixture_records(), ids=lambda raw: f"iter_{raw['iteration']}_{raw['status']}")
def test_every_record_an_older_version_wrote_round_trips_key_for_key_in_order(raw: dict) -> None:
    again = Attempt.from_json(raw).to_json()
    assert again == raw
    assert list(again) == list(raw)  # the file looks the same to a user reading it
    assert json.dumps(again) == json.dumps(raw)


def test_the_old_records_read_as_typed_attempts_with_their_model_call_as_a_turn() -> None:
    baseline, unparsed, ok, leak, rejected, crashed = (Attempt.from_json(raw) for raw in fixture_records())
    assert baseline.turns == () and baseline.parent is None and baseline.ok and baseline.entered_population
    assert baseline.population == (0,) and baseline.metric("val", "total_return") == baseline.val_return
    assert unparsed.status is Status.PARSE_ERROR and unparsed.block is None
    assert unparsed.turns == (Turn("test-model", "stop", 100, 50, False, 0.101, 6148, 13, 0, 0),)
    assert ok.turns[0].reply_source == "python-block" and ok.population == (0, 2)
    assert (leak.status, rejected.status, crashed.status) == (Status.LOOKAHEAD, Status.REJECTED, Status.RUNTIME_ERROR)
    assert crashed.error_type == "KeyError" and "Nope" in crashed.message and crashed.traceback
    assert (crashed.prompt_tokens, crashed.completion_tokens, crashed.latency_s) == (100, 50, 0.005)


def test_a_proposal_that_never_parsed_writes_neither_evaluation_nor_reply_keys() -> None:
    unparsed = Attempt.from_json(fixture_records()[1]).to_json()
    assert not {"warnings", "suspicious", "deferred_cuts", "output", "reply_source", "kept_from_parent"} & set(unparsed)
    assert {"prompt_tokens", "latency_s", "deadline_hits"} <= set(unparsed)


def repaired_record() -> Attempt:
    """The fixture's ok record as if its reply had been repaired once, after a parse error."""
    attempt = Attempt.from_json(fixture_records()[2])
    repair = replace(attempt.turns[0], prompt_tokens=300, error_status="parse_error", error="status `parse_error`: x")
    return replace(attempt, turns=(attempt.turns[0], repair))


def test_a_record_with_repair_turns_round_trips_and_keeps_the_first_turns_keys_in_place() -> None:
    attempt = repaired_record()
    raw = json.loads(json.dumps(attempt.to_json()))
    plain = fixture_records()[2]
    assert {k: v for k, v in raw.items() if k != "repairs"} == plain
    assert list(raw).index("repairs") == list(plain).index("started_at")  # after the first turn's keys
    assert raw["repairs"][0]["error_status"] == "parse_error" and "error" not in plain
    assert Attempt.from_json(raw) == attempt
    assert (attempt.repaired, attempt.prompt_tokens) == (True, plain["prompt_tokens"] + 300)


def test_a_records_families_and_nudge_round_trip_and_a_record_written_before_them_has_neither() -> None:
    plain = fixture_records()[2]
    old = Attempt.from_json(plain)
    assert (old.families, old.nudged) == (None, False)
    attempt = replace(old, families=("moving average", "crossover"), nudged=True)
    raw = json.loads(json.dumps(attempt.to_json()))
    assert (raw["families"], raw["nudged"]) == (["moving average", "crossover"], True)
    assert {k: v for k, v in raw.items() if k not in ("families", "nudged")} == plain
    assert Attempt.from_json(raw) == attempt


@pytest.mark.parametrize(
    ("repairs", "said"),
    [
        ("x", 'repairs is "x", not a list'),
        ([{"prompt_tokens": "1", "error": "e"}], 'repairs[0].prompt_tokens is "1", not a whole number'),
        ([{"prompt_tokens": 1}], "repairs[0] must follow a model turn and hold its error"),
    ],
)
def test_a_hand_edited_repairs_list_is_one_line_naming_the_entry(repairs: object, said: str) -> None:
    raw = {**repaired_record().to_json(), "repairs": repairs}
    with pytest.raises(ConfigError, match=re.escape(said)):
        Attempt.from_json(raw, "iter_2_results.json")


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("objective", "high", 'objective is "high", not a number or null'),
        ("population", {"0": 1}, 'population is {"0": 1}, not a list'),
        ("status", "great", 'status is "great", not one of ok, empty'),
        ("prompt_tokens", "100", 'prompt_tokens is "100", not a whole number'),
        ("windows", {"val": 3}, "windows.val is 3, not an object"),
        ("families", "moving average", 'families is "moving average", not a list'),
        ("families", [1], "families is [1], not a list of family names"),
    ],
)
def test_a_hand_edited_results_file_is_one_line_naming_the_file_and_the_key(
    tmp_path: Path, key: str, value: object, said: str
) -> None:
    run = tmp_path / "legacy"
    run.mkdir()
    record = {**fixture_records()[2], key: value}
    (run / "iter_2_results.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError) as caught:
        RunDir(run).read_record(2)
    message = str(caught.value)
    assert message.startswith(f"{run / 'iter_2_results.json'}: ") and said in message and "\n" not in message


def test_a_record_missing_its_iteration_is_refused() -> None:
    record = fixture_records()[0]
    del record["iteration"]
    with pytest.raises(ConfigError, match="iteration is missing"):
        Attempt.from_json(record, FIXTURE / "iter_0_results.json")


def test_a_key_the_record_never_holds_is_ignored_like_any_unknown_one() -> None:
    raw = {**fixture_records()[2], "turns": "edited in", "note": "mine"}
    assert Attempt.from_json(raw) == Attempt.from_json(fixture_records()[2])
