"""The random policy: vetted, causal source code from a seed, through the same path as a model's reply, end to end."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_loop import records
from typer.testing import CliRunner

from autotrade.cli.app import app
from autotrade.data.prepared import load_prepared
from autotrade.errors import ConfigError
from autotrade.evaluation.evaluate import evaluate_block
from autotrade.propose.policies import POLICIES, Proposal, ProposalRequest
from autotrade.propose.policies.random_search import RANDOM_MODEL, RandomProposer, random_strategy
from autotrade.propose.reply import parse_reply
from autotrade.registry import Entry
from autotrade.research.config import RunSettings
from autotrade.sandbox.pool import SandboxPool
from autotrade.sandbox.vet import vet_block

CLOSED_PORT = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "", "OPENAI_MODEL": ""}  # nothing listens


def strategies(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [random_strategy(rng).block for _ in range(n)]


def test_thirty_random_blocks_from_a_seed_all_pass_vetting_and_differ() -> None:
    blocks = strategies(2024, 30)
    for block in blocks:
        vet_block(block)
    assert len(set(blocks)) == 30


def test_random_blocks_evaluate_ok_or_no_trades_never_a_failure(  # noqa: F811
    small_data: Path, sandbox_pool: SandboxPool
) -> None:
    # Small data, not tiny: 9 of these 10 trade here, while in tiny_data's six-month windows only 7 do, the bound.
    data = load_prepared(small_data)
    statuses = [str(evaluate_block(block, data, pool=sandbox_pool).status) for block in strategies(2024, 30)[::3]]
    assert set(statuses) <= {"ok", "no_trades"}, statuses
    assert statuses.count("ok") >= 7


def test_random_strategies_cover_every_indicator_family() -> None:
    text = "\n".join(strategies(7, 80))
    for pattern in (
        r"\.rolling\(\d+\)\.mean\(\)",  # moving averages
        r"\.ewm\(span=\d+, adjust=False",  # exponential averages
        r"\.pct_change\(\d+\)",  # momentum
        r"wilder_rsi\(df\[\"Close\"\], \d+\)",  # RSI-like oscillators
        r"\.rolling\(\d+\)\.max\(\)\.shift\(1\)",  # breakouts against the prior high
        r"\.pct_change\(\)\.rolling\(\d+\)\.std\(\)",  # volatility filters
        r"df\[\"Volume\"\]\.rolling",  # volume filters
    ):
        assert re.search(pattern, text), pattern


def test_the_same_seed_writes_the_same_strategies() -> None:
    assert strategies(5, 10) == strategies(5, 10)
    assert strategies(5, 10) != strategies(6, 10)


def test_a_random_reply_parses_to_its_block_and_hypothesis() -> None:
    strategy = random_strategy(random.Random(3))
    parsed = parse_reply(strategy.reply(), "def generate_features(df):\n    return df\n", "stop")
    assert parsed.block == strategy.block and parsed.kept_from_parent == ()
    assert parsed.learnings.startswith(f"Random policy: {strategy.title}")


def test_the_random_proposer_draws_only_from_the_request_generator_and_costs_no_tokens() -> None:
    rng, twin = random.Random(11), random.Random(11)
    proposal = RandomProposer().propose(
        ProposalRequest(iteration=4, parent=2, parent_block="", prompt="ignored", rng=rng)
    )
    assert proposal.text == random_strategy(twin).reply() and rng.getstate() == twin.getstate()
    assert (proposal.model, proposal.finish_reason, proposal.prompt_tokens, proposal.completion_tokens) == (
        RANDOM_MODEL,
        "stop",
        0,
        0,
    )
    assert isinstance(POLICIES.get("random").proposer(None), RandomProposer)


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ConfigError, match="--policy 'oracle': choose one of model, random"):
        RunSettings(policy="oracle")


def test_autotrade_run_with_the_random_policy_needs_no_endpoint(
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [
        "run",
        "--policy",
        "random",
        "--max-iter",
        "5",
        "--seed",
        "1",
        "--name",
        "r",
        "--quiet",
        "--data",
        str(tiny_data),
    ]
    outcome = CliRunner().invoke(app, argv, env=CLOSED_PORT)
    assert outcome.exit_code == 0, outcome.output
    assert "policy=random" in outcome.output and "finished: reached --max-iter after 5 iterations" in outcome.output
    run = tmp_path / "train" / "r"
    for name in (
        "trade.py",
        "best_trade.py",
        "learnings.md",
        "config.json",
        "state.json",
        "iter_4_trade.py",
        "iter_4_response.md",
    ):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert (config["policy"], config["settings"]["policy"], config["model"]["model"], config["model"]["base_url"]) == (
        "random",
        "random",
        "random",
        None,
    )
    found = records(run)
    assert [r["policy"] for r in found] == ["random"] * 5 and [r["model"] for r in found[1:]] == ["random"] * 4
    assert all(r["status"] in ("ok", "no_trades") for r in found)
    assert sum(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in found) == 0
    assert found[1]["hypothesis"].startswith("Random policy:")


def test_endpoint_flags_with_the_random_policy_are_refused(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    outcome = CliRunner().invoke(
        app, ["run", "--policy", "random", "--model", "x", "--data", str(small_data)], env=CLOSED_PORT
    )
    assert outcome.exit_code == 1 and "--model: endpoint settings apply to --policy model only" in outcome.output
    assert not (tmp_path / "train").exists()


# -- the registry: one module and one line per policy --------------------------------------------------------------

CONSTANT_REPLY = (
    "```python\ndef generate_features(df):\n    df['sma_5'] = df['Close'].rolling(5).mean()\n    return df\n\n\n"
    "def strategy_logic(row):\n    return 1 if row['Close'] > row['sma_5'] else -1\n```\n\n"
    "```markdown\nConstant policy: close above its 5-bar average\n```\n"
)


class ConstantProposer:
    def propose(self, request: ProposalRequest) -> Proposal:
        return Proposal(text=CONSTANT_REPLY, finish_reason="stop", model="constant")

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ConstantPolicy:
    """A policy a test registers: the same reply every time, no endpoint."""

    name: str = "constant"
    needs_endpoint: bool = False
    builds_on_population: bool = False
    phase: str = "repeating itself"

    def proposer(self, model: object, on_wait: object = None, on_note: object = None) -> ConstantProposer:
        return ConstantProposer()


CONSTANT = ConstantPolicy()


@pytest.fixture
def constant_registered(monkeypatch: pytest.MonkeyPatch) -> str:
    """A new policy, registered the way a new module would be: one registry line pointing at it."""
    monkeypatch.setitem(POLICIES.entries, "constant", Entry("the same crossover every time", f"{__name__}:CONSTANT"))
    return "constant"


def test_every_registered_policy_is_its_own_name() -> None:
    assert POLICIES.names() == ("model", "random")
    for name in POLICIES.names():
        assert POLICIES.get(name).name == name
    assert POLICIES.get("model").needs_endpoint and not POLICIES.get("random").needs_endpoint


def test_the_model_policy_needs_endpoint_settings() -> None:
    with pytest.raises(ValueError, match="needs endpoint settings"):
        POLICIES.get("model").proposer(None)


def test_a_newly_registered_policy_runs_from_the_command_line_without_an_endpoint(
    constant_registered: str, small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert RunSettings(policy=constant_registered).policy == constant_registered
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--policy", constant_registered, "--max-iter", "3", "--name", "k", "--quiet"]
    outcome = CliRunner().invoke(app, [*argv, "--data", str(small_data)], env=CLOSED_PORT)
    assert outcome.exit_code == 0, outcome.output
    assert "finished: reached --max-iter after 3 iterations" in outcome.output  # no failure streak stops it
    config = json.loads((tmp_path / "train" / "k" / "config.json").read_text())
    assert (config["policy"], config["model"]["model"], config["model"]["base_url"]) == ("constant", "constant", None)
    found = records(tmp_path / "train" / "k")
    assert [r["hypothesis"] for r in found[1:]] == ["Constant policy: close above its 5-bar average"] * 2


def test_endpoint_flags_with_a_newly_registered_policy_without_an_endpoint_are_refused(
    constant_registered: str, small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = CliRunner().invoke(
        app, ["run", "--policy", constant_registered, "--base-url", "http://x:1/v1", "--data", str(small_data)]
    )
    assert outcome.exit_code == 1 and "--base-url: endpoint settings apply to --policy model only" in outcome.output
