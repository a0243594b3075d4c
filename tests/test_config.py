"""Endpoint settings from .env, the environment and flags; the run definition's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotrade.errors import ConfigError
from autotrade.research.config import (
    DEFAULT_API_KEY,
    DEFAULT_BASE_URL,
    RunSettings,
    load_env_file,
    model_settings,
    public_model_config,
)


def test_defaults_point_at_a_local_vllm_with_a_dummy_key() -> None:
    settings = model_settings(environ={})
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.api_key == DEFAULT_API_KEY
    assert settings.model is None and settings.max_tokens is None and settings.extra_body is None


def test_environment_values_are_read_and_typed() -> None:
    env = {
        "OPENAI_BASE_URL": "http://localhost:8080/v1/",
        "OPENAI_API_KEY": "sk-abc",
        "OPENAI_MODEL": "qwen",
        "OPENAI_TIMEOUT": "120",
        "OPENAI_MAX_TOKENS": "4096",
        "OPENAI_TEMPERATURE": "0.7",
        "OPENAI_EXTRA_BODY": '{"chat_template_kwargs": {"enable_thinking": false}}',
    }
    settings = model_settings(environ=env)
    assert settings.base_url == "http://localhost:8080/v1"
    assert (settings.api_key, settings.model, settings.timeout_s) == ("sk-abc", "qwen", 120.0)
    assert (settings.max_tokens, settings.temperature) == (4096, 0.7)
    assert settings.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}


def test_flags_override_the_environment() -> None:
    env = {"OPENAI_BASE_URL": "http://a:1/v1", "OPENAI_MODEL": "env-model", "OPENAI_MAX_TOKENS": "10"}
    settings = model_settings(base_url="http://b:2/v1", model="flag-model", max_tokens=99, temperature=0.0, environ=env)
    assert (settings.base_url, settings.model, settings.max_tokens, settings.temperature) == (
        "http://b:2/v1",
        "flag-model",
        99,
        0.0,
    )


def test_bad_extra_body_json_is_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="OPENAI_EXTRA_BODY is not valid JSON") as caught:
        model_settings(environ={"OPENAI_EXTRA_BODY": "{enable_thinking: false}"})
    assert "\n" not in str(caught.value)


def test_extra_body_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="must be a JSON object"):
        model_settings(environ={"OPENAI_EXTRA_BODY": "[1, 2]"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("OPENAI_MAX_TOKENS", "lots"), ("OPENAI_TEMPERATURE", "5"), ("OPENAI_TIMEOUT", "-1")],
)
def test_bad_numbers_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        model_settings(environ={name: value})


def test_endpoint_patience_defaults_to_half_an_hour() -> None:
    assert model_settings(environ={}).patience_s == 1800.0


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("90", 90.0), ("2.5", 2.5), ("45s", 45.0), ("30m", 1800.0), ("1h30m", 5400.0), ("2h", 7200.0), ("0", 0.0)],
)
def test_endpoint_patience_reads_seconds_or_a_duration(raw: str, seconds: float) -> None:
    assert model_settings(environ={"OPENAI_PATIENCE": raw}).patience_s == seconds
    assert model_settings(patience=raw, environ={"OPENAI_PATIENCE": "1h"}).patience_s == seconds  # the flag wins


@pytest.mark.parametrize("raw", ["soon", "-5", "30x", "m", "8d", "1e9"])
def test_a_bad_endpoint_patience_is_one_line_naming_where_it_came_from(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^OPENAI_PATIENCE=") as from_env:
        model_settings(environ={"OPENAI_PATIENCE": raw})
    with pytest.raises(ConfigError, match=r"^--endpoint-patience "):
        model_settings(patience=raw, environ={})
    assert "\n" not in str(from_env.value)


def test_base_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="http://host:port/v1"):
        model_settings(environ={"OPENAI_BASE_URL": "localhost:8000"})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:99999/v1", "port 99999 is out of range (1 to 65535)"),
        ("http://127.0.0.1:abc/v1", "port 'abc' is not a number"),
        ("http://127.0.0.1:0/v1", "port 0 is out of range (1 to 65535)"),
        ("http://[::1/v1", "the IPv6 address is not closed by ']'"),
        ("http://[not-ipv6]:8000/v1", "'not-ipv6' is not an IPv6 address"),
    ],
)
def test_a_base_url_with_a_bad_port_or_ipv6_literal_is_one_line_naming_it(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        model_settings(environ={"OPENAI_BASE_URL": url})
    assert str(caught.value) == f"base URL {url!r}: {problem}; it must look like http://host:port/v1"


def test_an_ipv6_base_url_with_a_port_is_accepted() -> None:
    assert model_settings(environ={"OPENAI_BASE_URL": "http://[::1]:8000/v1"}).base_url == "http://[::1]:8000/v1"


def test_dotenv_fills_only_unset_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("OPENAI_MODEL=from-dotenv\nOPENAI_BASE_URL=http://dotenv:9/v1\n")
    monkeypatch.setenv("OPENAI_MODEL", "")  # recorded, so teardown removes what load_dotenv sets
    monkeypatch.delenv("OPENAI_MODEL")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://real-env:1/v1")
    load_env_file(tmp_path)
    settings = model_settings()
    assert settings.model == "from-dotenv"
    assert settings.base_url == "http://real-env:1/v1"


def test_the_recorded_endpoint_config_never_holds_the_key() -> None:
    settings = model_settings(
        environ={"OPENAI_API_KEY": "sk-canary-123456", "OPENAI_BASE_URL": "http://u:pw@h:1/v1?k=sk-canary-123456"}
    )
    recorded = public_model_config(settings)
    assert "sk-canary" not in repr(recorded) and "pw" not in recorded["base_url"]
    assert recorded["base_url"] == "http://h:1/v1"


def test_run_settings_round_trip_through_json_form() -> None:
    settings = RunSettings(max_iter=7, seed=42, objective="val_sharpe", start_from="x.py")
    assert RunSettings.from_dict({**settings.to_dict(), "unknown_future_key": 1}) == settings


def test_a_config_written_before_repair_existed_reads_as_no_repair_so_it_resumes_as_it_ran() -> None:
    before = {k: v for k, v in RunSettings().to_dict().items() if k != "repair"}
    assert (RunSettings().repair, RunSettings.from_dict(before).repair) == (1, 0)
    assert RunSettings.from_dict(RunSettings(repair=3).to_dict()).repair == 3


def test_a_config_written_before_the_collapse_window_existed_reads_as_off_so_its_prompts_stay_as_they_were() -> None:
    before = {k: v for k, v in RunSettings().to_dict().items() if k != "collapse_window"}
    assert (RunSettings().collapse_window, RunSettings.from_dict(before).collapse_window) == (5, 0)
    assert RunSettings.from_dict(RunSettings(collapse_window=3).to_dict()).collapse_window == 3


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("max_iter", 0, "--max-iter"),
        ("max_fails", 0, "--max-fails"),
        ("population", 0, "--population"),
        ("objective", "profit", "--objective"),
        ("repair", 6, "--repair"),
        ("repair", -1, "--repair"),
        ("collapse_window", -1, "--collapse-window"),
    ],
)
def test_run_settings_reject_values_naming_the_flag(field: str, value: object, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        RunSettings(**{field: value})


def test_dotenv_saved_with_a_utf8_bom_still_sets_its_first_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_bytes("OPENAI_MODEL=from-bom\n".encode("utf-8-sig"))
    monkeypatch.setenv("OPENAI_MODEL", "")  # recorded, so teardown removes what load_dotenv sets
    monkeypatch.delenv("OPENAI_MODEL")
    load_env_file(tmp_path)
    assert model_settings().model == "from-bom"
