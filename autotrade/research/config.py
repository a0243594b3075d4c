"""Settings: the model endpoint (from `.env`, the environment and flags) and what defines a run.

Precedence for the endpoint: a CLI flag, then the real environment, then `.env` in the working
directory (python-dotenv never overrides a variable that is already set), then the defaults below.
The API key is read from the environment only and is never written anywhere.
"""

from __future__ import annotations

import codecs
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autotrade.data.windows import MAX_FOLDS, WINDOW_MODES
from autotrade.durations import parse_duration
from autotrade.errors import ConfigError
from autotrade.evaluation.across import ACROSS, DEFAULT_ACROSS
from autotrade.evaluation.objectives import DEFAULT_OBJECTIVE, DEFAULT_ROBUST_K, OBJECTIVES
from autotrade.propose.client import ModelSettings, display_url, endpoint_urls
from autotrade.propose.policies import DEFAULT_POLICY, POLICIES
from autotrade.propose.reply_format import JSON, REPLY_FORMATS, TEXT
from autotrade.shapes import check_object, describe, schema_of

DEFAULT_BASE_URL = "http://localhost:8000/v1"  # vLLM's default port
# Local servers accept any key; the openai client refuses to start without one.
DEFAULT_API_KEY = "EMPTY"
DEFAULT_TIMEOUT_S = 600.0  # 30B-class local models can think for minutes
MAX_PARALLEL = 64  # proposals in flight; beyond this a server's batch is full and the harness only waits
MAX_REPAIR = 5  # repair turns per iteration; beyond a few, a model that keeps failing is better asked afresh
DEFAULT_PATIENCE_S = 1800.0  # a model server restarted overnight (model swap, crash, OOM) is back well within it
# What a setting means in a config.json written before it existed, where that is not today's default.
# Older runs never repaired, refused duplicates nor nudged a collapsed search: they resume exactly as they ran,
# prompts included.
BEFORE_THE_KEY: dict[str, Any] = {"repair": 0, "novelty": False, "collapse_window": 0}


def load_env_file(cwd: Path | None = None) -> None:
    """Load `.env` from the working directory without overriding variables already set; ConfigError when unreadable."""
    from dotenv import load_dotenv

    path = (cwd or Path.cwd()) / ".env"
    if not path.is_file():
        return
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or type(exc).__name__}): fix its permissions") from None
    # UTF-16 (Windows editors' "Unicode") decodes as UTF-8 when it has no BOM, and its NUL bytes then break os.environ.
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\0" in raw:
        raise ConfigError(f"{path}: saved as UTF-16 (or holds NUL bytes): save it as UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 BOM would otherwise become part of the first variable's name
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}): save it as UTF-8 text"
        ) from None
    load_dotenv(stream=io.StringIO(text), override=False)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """A variable's value, stripped; None when unset or blank."""
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _number(environ: Mapping[str, str], name: str, kind: type, low: float, high: float) -> Any:
    """Parse a numeric variable within [low, high], or raise one line naming it."""
    raw = _env(environ, name)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {'whole number' if kind is int else 'number'}") from None
    if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"{name}={raw!r} is out of range ({low:g} to {high:g})")
    return value


def parse_extra_body(raw: str | None, name: str = "OPENAI_EXTRA_BODY") -> dict[str, Any] | None:
    """Parse the JSON object passed to the server as `extra_body`; None when unset."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{name} is not valid JSON ({exc.msg} at character {exc.pos}); "
            'example: {"chat_template_kwargs": {"enable_thinking": false}}'
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash, or ConfigError when it is not http(s) or its host or port is malformed.

    Several endpoints (replicas of one model) are separated by commas; each is checked, and repeats are dropped.
    """
    urls = endpoint_urls(url)
    if not urls:
        raise ConfigError(f"base URL {url!r} names no endpoint; it must look like http://host:port/v1")
    if len(urls) > 1:
        return ",".join(dict.fromkeys(check_base_url(one) for one in urls))
    url = urls[0]
    problem = _host_problem(url)
    if problem is not None:
        raise ConfigError(f"base URL {url!r}: {problem}; it must look like http://host:port/v1")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base URL {url!r} must look like http://host:port/v1")
    return url.rstrip("/")


def _host_problem(url: str) -> str | None:
    """What is wrong with the URL's host or port, in words; None when both parse."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # urlsplit checks brackets and what is inside them
        netloc = url.partition("//")[2].partition("/")[0]
        if "]" not in netloc:
            return "the IPv6 address is not closed by ']'"
        if "[" not in netloc:
            return "an IPv6 address goes in brackets, as in http://[::1]:8000/v1"
        return f"{netloc.partition('[')[2].partition(']')[0]!r} is not an IPv6 address"
    try:
        port = urlsplit(url).port  # parsed only when asked for: the first use would raise a bare ValueError
    except ValueError:
        raw = netloc.rpartition(":")[2]
        return f"port {raw!r} is not a number" if not raw.isdigit() else f"port {raw} is out of range (1 to 65535)"
    return "port 0 is out of range (1 to 65535)" if port == 0 else None


def model_settings(
    *,
    base_url: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout_s: float | None = None,
    extra_body: dict[str, Any] | None = None,
    patience: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModelSettings:
    """Endpoint settings: each argument given overrides the environment (call load_env_file first)."""
    env = os.environ if environ is None else environ
    url = check_base_url(base_url or _env(env, "OPENAI_BASE_URL") or DEFAULT_BASE_URL)
    if temperature is not None and not 0 <= temperature <= 2:
        raise ConfigError(f"--temperature {temperature:g} is out of range (0 to 2)")
    if max_tokens is not None and max_tokens < 1:
        raise ConfigError(f"--max-tokens {max_tokens} must be at least 1")
    env_timeout = _number(env, "OPENAI_TIMEOUT", float, 1.0, 86_400.0)
    if patience is not None:
        patience_s = parse_duration(patience, "--endpoint-patience ")
    else:
        env_patience = _env(env, "OPENAI_PATIENCE")
        patience_s = parse_duration(env_patience, "OPENAI_PATIENCE=") if env_patience else DEFAULT_PATIENCE_S
    return ModelSettings(
        base_url=url,
        api_key=_env(env, "OPENAI_API_KEY") or DEFAULT_API_KEY,
        model=model or _env(env, "OPENAI_MODEL"),
        timeout_s=timeout_s or env_timeout or DEFAULT_TIMEOUT_S,
        max_tokens=max_tokens if max_tokens is not None else _number(env, "OPENAI_MAX_TOKENS", int, 1, 10_000_000),
        temperature=temperature if temperature is not None else _number(env, "OPENAI_TEMPERATURE", float, 0.0, 2.0),
        extra_body=extra_body if extra_body is not None else parse_extra_body(_env(env, "OPENAI_EXTRA_BODY")),
        patience_s=patience_s,
    )


def public_model_config(settings: ModelSettings) -> dict[str, Any]:
    """What a run records about its endpoint: everything but the API key."""
    return {
        "base_url": display_url(settings.base_url),
        "model": settings.model,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "extra_body": settings.extra_body,
        "timeout_s": settings.timeout_s,
    }


@dataclass(frozen=True)
class RunSettings:
    """What defines a run; pinned in config.json so that resume continues the same experiment."""

    max_iter: int = 50  # evaluated iterations, the baseline (iteration 0) included
    max_fails: int = 5  # consecutive iterations that do not enter the population
    population: int = 3  # members kept, best first by the objective
    seed: int = 0  # random reversion
    objective: str = DEFAULT_OBJECTIVE  # a name in OBJECTIVES
    robust_k: int = DEFAULT_ROBUST_K  # sub-windows of train + validation for the robust objective
    policy: str = DEFAULT_POLICY  # a name in POLICIES: who proposes
    learnings_budget: int = 6000  # characters of learnings in each prompt
    fill: str = "next-open"
    cost_bps: float = 2.0  # per side, basis points of traded value
    eval_timeout: float = 60.0  # seconds per candidate evaluation
    data_dir: str = "data"
    start_from: str | None = None  # the trade.py iteration 0 came from; None = packaged baseline
    anonymize: bool = False  # hide the instrument and calendar from the model (data.Anonymization)
    parallel: int = 1  # proposals in flight at once; iteration i is asked from the committed state after i - parallel
    reply_format: str = TEXT  # a name in REPLY_FORMATS: how the model is asked to reply (configs before it: text)
    repair: int = 1  # turns a failed reply gets in the same conversation, its error sent back, before it counts
    folds: int = 1  # walk-forward folds over the research period (data.plan.Folds); 1: the prepared split
    window_mode: str = "expanding"  # a name in WINDOW_MODES: each fold's train span
    across: str = DEFAULT_ACROSS  # a name in ACROSS: how assets and folds aggregate into the objective
    novelty: bool = True  # a repeat of an earlier strategy (structure, or a member's positions) is a duplicate
    budget_tokens: int | None = None  # stop once the committed iterations spent this many tokens; None: no budget
    budget_minutes: float | None = None  # stop after this much research time, over every resume; None: no budget
    collapse_window: int = 5  # ok attempts in a row in one structure family before a prompt asks for another; 0: off

    def __post_init__(self) -> None:
        """Reject settings that cannot define a run, naming the flag."""
        broken = _broken_rule(asdict(self))
        if broken is not None:
            key, rule = broken
            raise ConfigError(f"--{key.replace('_', '-')} {getattr(self, key)!r}: {rule}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for config.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, source: object = "config.json") -> RunSettings:
        """Rebuild from config.json's `settings`, ignoring keys this version does not know.

        A wrong value is a ConfigError naming `source` and the key (a hand edit, never a flag the user gave).
        """
        check_object(raw, schema_of(cls), source, "settings.")
        known = {f.name for f in fields(cls)}
        values = {**asdict(cls()), **BEFORE_THE_KEY, **{k: v for k, v in raw.items() if k in known}}
        broken = _broken_rule(values)
        if broken is not None:
            key, rule = broken
            raise ConfigError(f"{source}: settings.{key} is {describe(values[key])}: {rule}")
        return cls(**values)


def _broken_rule(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first setting that cannot define a run, and the rule it breaks; None when all hold."""
    rules = (
        ("max_iter", values["max_iter"] >= 1, "must be at least 1 (iteration 0 is the baseline)"),
        ("max_fails", values["max_fails"] >= 1, "must be at least 1"),
        ("population", values["population"] >= 1, "must be at least 1"),
        ("learnings_budget", values["learnings_budget"] >= 0, "must not be negative"),
        ("cost_bps", values["cost_bps"] >= 0 and math.isfinite(values["cost_bps"]), "must be a non-negative number"),
        ("objective", values["objective"] in OBJECTIVES.names(), f"choose one of {', '.join(OBJECTIVES.names())}"),
        ("robust_k", values["robust_k"] >= 1, "must be at least 1"),
        ("policy", values["policy"] in POLICIES.names(), f"choose one of {', '.join(POLICIES.names())}"),
        ("fill", values["fill"] in ("next-open", "close"), "choose next-open or close"),
        ("eval_timeout", values["eval_timeout"] > 0, "must be positive"),
        ("parallel", 1 <= values["parallel"] <= MAX_PARALLEL, f"must be 1 to {MAX_PARALLEL}"),
        ("reply_format", values["reply_format"] in REPLY_FORMATS, f"choose one of {', '.join(REPLY_FORMATS)}"),
        (
            "reply_format",
            values["reply_format"] != JSON
            or values["policy"] not in POLICIES.names()
            or POLICIES.get(values["policy"]).needs_endpoint,
            f"json is how a model is asked to reply: the {values['policy']} policy asks none",
        ),
        ("repair", 0 <= values["repair"] <= MAX_REPAIR, f"must be 0 to {MAX_REPAIR}"),
        ("folds", 1 <= values["folds"] <= MAX_FOLDS, f"must be 1 (no walk-forward) to {MAX_FOLDS}"),
        ("window_mode", values["window_mode"] in WINDOW_MODES, f"choose one of {', '.join(WINDOW_MODES)}"),
        ("across", values["across"] in ACROSS, f"choose one of {', '.join(ACROSS)}"),
        ("budget_tokens", values["budget_tokens"] is None or values["budget_tokens"] >= 1, "must be at least 1"),
        (
            "budget_minutes",
            values["budget_minutes"] is None
            or (values["budget_minutes"] > 0 and math.isfinite(values["budget_minutes"])),
            "must be a positive number",
        ),
        ("collapse_window", values["collapse_window"] >= 0, "must not be negative (0: off)"),
    )
    return next(((key, rule) for key, holds, rule in rules if not holds), None)
