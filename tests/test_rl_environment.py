"""autotrade.rl.load_environment: a verifiers SingleTurnEnv, evaluated end to end against the real llama.cpp server.

It needs the rl extra (`pip install -e '.[test,rl]'`); without it these tests skip, unless AUTOTRADE_TEST_REQUIRE_RL=1
(CI's normal-user run installs the extra and sets it): then a missing verifiers fails them instead.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import pytest
from llama_server import LlamaServer
from test_real_server import SHORT_TEMPLATE

from autotrade.data.prepared import load_prepared
from autotrade.errors import ConfigError
from autotrade.evaluation.objectives.rubric import RUBRIC_WEIGHTS
from autotrade.rl import load_environment
from autotrade.rl.environment import GATES


def needs_verifiers() -> None:
    """Skip (or, where CI requires the extra, fail) when verifiers is not installed."""
    if importlib.util.find_spec("verifiers") is None:
        reason = "verifiers is not installed: pip install -e '.[test,rl]'"
        if os.environ.get("AUTOTRADE_TEST_REQUIRE_RL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def test_without_the_rl_extra_the_environment_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tiny_data: Path
) -> None:
    monkeypatch.setitem(sys.modules, "verifiers", None)  # what an install without the extra looks like to import
    with pytest.raises(ConfigError, match=r"pip install 'autotrade\[rl\]'"):
        load_environment(load_prepared(tiny_data))


def test_rollouts_against_the_real_server_get_finite_rewards_and_every_component(
    llama_server: LlamaServer, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_verifiers()
    import verifiers as vf

    # The packaged prompt (~2,000 tokens) would not fit one slot of the test server with a reply; a user's own
    # prompts/ folder overrides it, as for a run.
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "prompt_template.md").write_text(SHORT_TEMPLATE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOTRADE_TEST_KEY", "sk-none")
    # By name, as `vf-eval autotrade.rl` and prime-rl load it.
    env = vf.load_environment("autotrade.rl", data=load_prepared(tiny_data), starts=1)
    try:
        client = vf.ClientConfig(api_base_url=llama_server.base_url, api_key_var="AUTOTRADE_TEST_KEY")
        results = env.evaluate_sync(
            client=client,
            model=llama_server.model_id,
            sampling_args={"max_tokens": 128, "temperature": 0.7},
            num_examples=1,
            rollouts_per_example=2,
        )
    finally:
        env.autotrade_reward.close()
    rollouts = results["outputs"]
    assert len(rollouts) == 2
    for rollout in rollouts:
        assert rollout.get("error") is None and rollout["completion"]
        assert math.isfinite(rollout["reward"]) and 0.0 <= rollout["reward"] <= 1.0
        metrics = rollout["metrics"]
        assert {*RUBRIC_WEIGHTS, "gated", *(f"gate_{g}" for g in GATES)} <= set(metrics)
        weighted = sum(RUBRIC_WEIGHTS[name] * metrics[name] for name in RUBRIC_WEIGHTS) + metrics["gated"]
        assert weighted == pytest.approx(rollout["reward"])
