"""A verifiers environment: the product's prompts as its dataset, the harness's gated evaluation as its rubric.

``load_environment()`` returns a verifiers ``SingleTurnEnv`` (``vf-eval`` and prime-rl load it by this name). Its
dataset is ``tasks.build_tasks``: the prompt iteration 1 of a run would send, per bundled asset and starting
strategy. Its ``Rubric`` scores each rollout once, through the reward (``rl.reward``: parse, vet, sandbox,
look-ahead gate, backtest on the research windows only), and shows the objective's components as separate weighted
functions, so a trainer's log shows which part of the score moved:

- one function per component, weighted as the objective weighs it (rubric: sharpe 0.40, beats_buy_and_hold 0.20,
  …; composite: compile 0.3, performance 0.7), each 0 when a gate failed;
- ``gated`` (weight 1): the gated failure's score (rubric 0; composite -1 or -0.7), 0 when every gate passed;
- an objective that is not a weighted sum (val_return, val_sharpe, robust) is one ``objective`` function instead;
- ``gate_<name>`` (weight 0, a metric): 1 when that gate passed.
So the weighted sum of a rollout's functions is its reward exactly.

verifiers is an optional extra (``pip install 'autotrade[rl]'``): nothing else imports it, and the core install
does not grow.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from autotrade.data.prepared import PreparedData
from autotrade.errors import ConfigError
from autotrade.evaluation.objectives import OBJECTIVES
from autotrade.evaluation.objectives.rubric import rubric_score
from autotrade.evaluation.score import Score
from autotrade.research.config import RunSettings
from autotrade.rl.reward import RewardFunction, reward_function
from autotrade.rl.tasks import as_assets, build_tasks

SCORE_KEY = "autotrade_score"  # where a rollout's state keeps its one evaluation
GATES = tuple(rubric_score({}, "ok").gates)  # every objective's hard gates, by name


def load_environment(
    data: PreparedData | Path | str | Mapping[str, PreparedData] | None = None,
    *,
    objective: str = "rubric",
    starts: int = 4,
    seed: int = 0,
    floor: float | None = None,
    settings: RunSettings | None = None,
    system_prompt: str | None = None,
    **kwargs: Any,
) -> Any:
    """A verifiers SingleTurnEnv over the product's prompts, rewarded by the harness.

    `data`: as ``rl.reward_function`` takes it (None: the bundled daily samples); `starts`: starting strategies per
    asset (the baseline, then random ones drawn from `seed`); `objective` and `floor`: the reward's; `settings`:
    the run settings prompts describe and the reward scores under. Other keyword arguments go to SingleTurnEnv.
    The environment's reward (``env.autotrade_reward``) owns a sandbox: ``env.autotrade_reward.close()`` stops it.
    """
    try:
        import verifiers as vf
        from datasets import Dataset
    except ImportError as exc:
        raise ConfigError(
            f"the verifiers environment needs the rl extra ({exc.name} is not installed): pip install 'autotrade[rl]'"
        ) from None
    settings = settings or RunSettings(objective=objective)
    assets = as_assets(data)
    reward = reward_function(assets, objective, floor=floor, settings=settings)
    tasks = build_tasks(assets, starts=starts, seed=seed, settings=reward.settings, pool=reward.pool)
    dataset = Dataset.from_list(
        [
            {
                "prompt": row["prompt"],
                "info": {"asset": row["asset"], "parent_block": row["parent_block"], "start": row["start"]},
            }
            for row in (task.row() for task in tasks)
        ]
    )
    funcs, weights = rubric_functions(reward)
    env = vf.SingleTurnEnv(
        dataset=dataset,
        eval_dataset=dataset,
        system_prompt=system_prompt,
        rubric=vf.Rubric(funcs=funcs, weights=weights),
        **kwargs,
    )
    env.autotrade_reward = reward
    return env


def rubric_functions(reward: RewardFunction) -> tuple[list[Callable[..., Any]], list[float]]:
    """The rubric's functions and weights for a reward: its objective's weighted components (or the objective
    whole), the gated failure's score, and a metric per gate; their weighted sum is the reward."""
    chosen = OBJECTIVES.get(reward.objective)
    funcs: list[Callable[..., Any]] = []
    weights: list[float] = []
    if chosen.weights:
        for name, weight in chosen.weights.items():
            funcs.append(_function(reward, name, lambda score, name=name: score.components.get(name, 0.0)))
            weights.append(weight)
    else:
        funcs.append(_function(reward, "objective", reward.reward_of))
        weights.append(1.0)
    funcs.append(_gated_function(reward))
    weights.append(1.0)
    for gate in GATES:
        funcs.append(
            _function(reward, f"gate_{gate}", lambda score, gate=gate: float(score.gates.get(gate, False)), always=True)
        )
        weights.append(0.0)
    return funcs, weights


def _function(
    reward: RewardFunction, name: str, read: Callable[[Score], float], *, always: bool = False
) -> Callable[..., Any]:
    """A rubric function reading one figure of the rollout's score: 0 when a gate failed, unless `always`."""

    async def function(
        completion: Any, state: dict[str, Any], info: Mapping[str, Any] | None = None, **_: Any
    ) -> float:
        score = await _score(reward, completion, state, info)
        return read(score) if always or _earned(score) else 0.0

    function.__name__ = name
    return function


def _gated_function(reward: RewardFunction) -> Callable[..., Any]:
    """The rubric function carrying a gated failure's score (its weighted components are all 0 then)."""

    async def gated(completion: Any, state: dict[str, Any], info: Mapping[str, Any] | None = None, **_: Any) -> float:
        score = await _score(reward, completion, state, info)
        return 0.0 if _earned(score) else reward.reward_of(score)

    return gated


def _earned(score: Score) -> bool:
    """Whether the score is its components' weighted sum: every gate passed and every component is a number."""
    return score.passed and score.status == "ok" and all(math.isfinite(v) for v in score.components.values())


async def _score(
    reward: RewardFunction, completion: Any, state: dict[str, Any], info: Mapping[str, Any] | None
) -> Score:
    """The rollout's score, evaluated once (on a thread, so a group's rollouts evaluate at once) and kept in its
    state for the rubric's other functions."""
    if SCORE_KEY not in state:
        info = info or state.get("info") or {}
        finish = "length" if state.get("is_truncated") else None
        state[SCORE_KEY] = await asyncio.to_thread(
            reward.score, completion, info.get("asset"), info.get("parent_block"), finish
        )
    return state[SCORE_KEY]
