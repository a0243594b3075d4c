"""autotrade.rl.tasks: the prompts a policy model trains on are the prompts a run sends (never the test window)."""

from __future__ import annotations

from pathlib import Path

from openai_server import OpenAIServer, Reply
from test_loop import start

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.prepared import load_prepared
from autotrade.propose.prompts import load_prompt_files
from autotrade.research.config import RunSettings
from autotrade.rl.tasks import build_tasks, starting_blocks
from autotrade.sandbox.pool import SandboxPool


def test_a_tasks_prompt_is_the_prompt_a_runs_first_proposal_sends(
    openai_server: OpenAIServer, tmp_path: Path, tiny_data: Path, sandbox_pool: SandboxPool
) -> None:
    openai_server.script([Reply("No code this time.")])  # what the reply holds does not matter: its prompt does
    start(openai_server, tmp_path, tiny_data, max_iter=2, objective="rubric")
    sent = openai_server.chat_requests[0].body["messages"]
    run_settings = RunSettings(max_iter=2, max_fails=10, seed=7, data_dir=str(tiny_data), repair=0, objective="rubric")
    (task,) = build_tasks(
        load_prepared(tiny_data), starts=1, settings=run_settings, prompts=load_prompt_files(tmp_path)
    )
    assert task.row()["prompt"] == sent
    assert task.row()["parent_block"] == extract_block(baseline_source()) and task.asset == "spx"
    data = load_prepared(tiny_data)
    test_days = [str(day.date()) for day in data.frame.index[data.frame.index >= data.splits.test_start]]
    assert test_days and not any(day in task.prompt for day in test_days)


def test_starting_strategies_are_the_baseline_then_seeded_random_ones() -> None:
    blocks = starting_blocks(3, seed=5)
    assert blocks[0] == extract_block(baseline_source())
    assert blocks == starting_blocks(3, seed=5) and blocks[1:] != starting_blocks(3, seed=6)[1:]
    assert len(set(blocks)) == 3
