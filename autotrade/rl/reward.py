"""The harness as a training reward: TRL's reward-function signature over the loop's own scoring path.

``reward_function(data=..., objective=...)`` returns a callable ``(prompts, completions, **kwargs) -> list[float]``,
the signature TRL's ``GRPOTrainer`` calls. Each completion (text, or chat messages) goes through what a run does with
a reply: parse, vet, the sandboxed run, the look-ahead gate, the backtest (``research.reward.score_reply``), on the
research windows only. Completions are scored in parallel in one sandbox pool the reward owns.

What a trainer must be able to trust of a reward:
- It never raises for a completion: a reply that does not parse, is unsafe, leaks the future or breaks the harness
  scores the floor, and the reason is logged.
- A gated failure scores the objective's floor (rubric: 0; composite: -1 for invalid code, -0.7 for a failed check),
  never a value a trainer cannot normalise: an unbounded objective needs `floor` given.
- The look-ahead gate's random cuts are drawn afresh for every evaluation, so a policy cannot learn where they fall.
- A completion that resubmits its parent, or whose validation positions move with the parent's, is a gated
  `duplicate` (unless ``refuse_copies=False``), as in a run.
- Components are logged: through TRL's ``log_metric``/``log_extra`` when the trainer passes them, to a JSONL file
  when `log_path` is given, and as ``last`` (the latest batch's scores) for anyone holding the reward.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.prepared import PreparedData
from autotrade.errors import ConfigError
from autotrade.evaluation.objectives import OBJECTIVES
from autotrade.evaluation.score import Score
from autotrade.fileio import json_safe
from autotrade.research.config import RunSettings
from autotrade.research.reward import parent_positions, score_reply
from autotrade.research.rundir import eval_settings
from autotrade.rl.tasks import as_assets
from autotrade.sandbox.pool import SandboxPool

log = logging.getLogger(__name__)

HARNESS_ERROR = "harness_error"  # the status logged when scoring itself failed (the sandbox broke, not the reply)


class RewardFunction:
    """A reward for TRL's GRPOTrainer (and anyone else): one float per completion, scored by the harness.

    Dataset columns it reads from the trainer's kwargs: `asset` (which of its assets a prompt is about; needed when
    it has several) and `parent_block` (the strategy the prompt asked to improve, whose functions a reply may leave
    out; default the packaged baseline). Call ``close()`` (or use it as a context manager) to stop its sandbox.
    """

    def __init__(
        self,
        assets: Mapping[str, PreparedData],
        objective: str,
        *,
        floor: float,
        settings: RunSettings,
        workers: int,
        log_path: Path | None = None,
        max_completion_length: int | None = None,
        refuse_copies: bool = True,
    ) -> None:
        self.assets = dict(assets)
        self.refuse_copies = refuse_copies
        self.objective = objective
        self.floor = floor
        self.settings = settings
        self.max_completion_length = max_completion_length
        self.log_path = log_path
        self.__name__ = f"autotrade_{objective}"  # TRL names the reward's logged columns after it
        self.last: list[Score] = []
        # A fresh secret per evaluation: a policy trained for thousands of steps must not learn where the cuts fall.
        self._eval = replace(eval_settings(settings), gate_secret=None)
        self._pool = SandboxPool()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autotrade-reward")
        self._log_lock = threading.Lock()
        # Each parent's validation positions, evaluated once per asset by the first completion that needs them.
        self._parents: dict[tuple[str, str], Future[np.ndarray | None]] = {}
        self._parents_lock = threading.Lock()
        self._calls = 0
        self._finalizer = weakref.finalize(self, _shut, self._executor, self._pool)

    def __call__(
        self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any
    ) -> list[float]:
        """One reward per completion, in order; scored in parallel. Extra kwargs TRL passes are read or ignored."""
        self._check_open()
        count = len(completions)
        asset_names = self._column(kwargs, "asset", count)
        parents = self._column(kwargs, "parent_block", count)
        lengths = self._column(kwargs, "completion_ids", count)
        jobs = []
        for i, completion in enumerate(completions):
            asset = self._asset(asset_names[i])
            cut = (
                self.max_completion_length is not None
                and lengths[i] is not None
                and len(lengths[i]) >= self.max_completion_length
            )
            jobs.append((completion_text(completion), asset, parents[i], "length" if cut else None))
        scores = list(self._executor.map(lambda job: self.score(*job), jobs))
        rewards = [self.reward_of(score) for score in scores]
        self.last = scores
        self._report(scores, rewards, [name or "" for name in asset_names], kwargs)
        return rewards

    def score(
        self,
        completion: Any,
        asset: str | None = None,
        parent_block: str | None = None,
        finish_reason: str | None = None,
    ) -> Score:
        """The harness's score of one completion on one asset; never raises for a completion (a harness failure scores
        the floor), only when the reward is closed."""
        self._check_open()
        try:
            name = self._asset(asset)
            parent = parent_block or extract_block(baseline_source())
            return score_reply(
                completion_text(completion),
                self.assets[name],
                objective=self.objective,
                settings=self._eval,
                robust_k=self.settings.robust_k,
                parent_block=parent,
                finish_reason=finish_reason,
                pool=self._pool,
                refuse_copies=self.refuse_copies,
                parent_positions=self._parent_positions(name, parent) if self.refuse_copies else None,
            )
        except Exception as exc:  # noqa: BLE001 - a trainer's step must go on; the failure is logged, not hidden
            log.warning(
                "autotrade reward: scoring failed (%s: %s); the completion scores the floor", type(exc).__name__, exc
            )
            return Score({}, {}, self.floor, HARNESS_ERROR, f"{type(exc).__name__}: {exc}", objective=self.objective)

    @property
    def pool(self) -> SandboxPool:
        """The sandbox pool the reward scores in (a caller evaluating alongside it may share it)."""
        return self._pool

    def reward_of(self, score: Score) -> float:
        """The score's total as a reward: the floor when it is not finite (a gated unbounded objective)."""
        return score.total if math.isfinite(score.total) else self.floor

    def close(self) -> None:
        """Stop the worker threads and the sandbox; the reward refuses to score afterwards."""
        self._finalizer()

    def __enter__(self) -> RewardFunction:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _parent_positions(self, asset: str, parent: str) -> np.ndarray | None:
        """The parent's validation positions on `asset` (``research.reward.parent_positions``), evaluated once: a
        group of completions of one prompt waits for the first to evaluate it. A failure is not kept, so the next
        completion tries again."""
        key = (asset, parent)
        with self._parents_lock:
            future = self._parents.get(key)
            first = future is None
            if future is None:
                future = self._parents[key] = Future()
        if first:
            try:
                future.set_result(parent_positions(parent, self.assets[asset], self._eval, self._pool))
            except Exception as exc:
                with self._parents_lock:
                    del self._parents[key]
                future.set_exception(exc)
        return future.result()

    def _check_open(self) -> None:
        """RuntimeError once closed: with its sandbox stopped every completion would score the floor, silently."""
        if not self._finalizer.alive:
            raise RuntimeError("this autotrade reward is closed: make a new one with reward_function(...)")

    def _asset(self, name: str | None) -> str:
        """The asset a completion is scored on: the one named, or the only one."""
        if name is None:
            if len(self.assets) == 1:
                return next(iter(self.assets))
            raise ConfigError(
                f"the reward scores on {len(self.assets)} assets ({', '.join(self.assets)}): its dataset needs an "
                "`asset` column naming one per prompt (autotrade.rl.tasks rows have one)"
            )
        if name not in self.assets:
            raise ConfigError(
                f"the dataset names asset {name!r}, which the reward was not given: {', '.join(self.assets)}"
            )
        return name

    @staticmethod
    def _column(kwargs: Mapping[str, Any], key: str, count: int) -> list[Any]:
        """A dataset column TRL passed as a kwarg (one value per completion), or None for each; ConfigError when it
        does not hold one value per completion (a misaligned column would score completions on another's row)."""
        values = kwargs.get(key)
        if values is None:
            return [None] * count
        if len(values) != count:
            raise ConfigError(f"the trainer passed {len(values)} value(s) of `{key}` for {count} completions")
        return list(values)

    def _report(self, scores: list[Score], rewards: list[float], assets: list[str], kwargs: Mapping[str, Any]) -> None:
        """Log the batch: components' means and status shares through TRL, each completion to the JSONL file."""
        self._calls += 1
        if not scores:
            return
        log_metric, log_extra = kwargs.get("log_metric"), kwargs.get("log_extra")
        if callable(log_metric):
            for name, value in batch_metrics(scores).items():
                log_metric(f"autotrade/{name}", value)
        if callable(log_extra):
            log_extra("autotrade_status", [score.status for score in scores])
        if self.log_path is not None:
            state = kwargs.get("trainer_state")
            step = getattr(state, "global_step", None)
            lines = [
                json.dumps(
                    json_safe(
                        {
                            "call": self._calls,
                            "step": step,
                            "asset": asset,
                            "status": score.status,
                            "reward": reward,
                            "components": score.components,
                            "gates": score.gates,
                            "message": score.message[:500],
                        }
                    )
                )
                for score, reward, asset in zip(scores, rewards, assets, strict=True)
            ]
            with self._log_lock, self.log_path.open("a", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")


def batch_metrics(scores: Sequence[Score]) -> dict[str, float]:
    """A batch's figures for a trainer's log: each component's mean over the completions that have it, each gate's
    pass rate, and each status's share."""
    figures: dict[str, float] = {}
    components: dict[str, list[float]] = {}
    for score in scores:
        for name, value in score.components.items():
            if math.isfinite(value):
                components.setdefault(name, []).append(value)
    figures |= {name: sum(values) / len(values) for name, values in components.items()}
    gates: dict[str, list[bool]] = {}
    for score in scores:
        for name, passed in score.gates.items():
            gates.setdefault(name, []).append(passed)
    figures |= {f"gate/{name}": sum(values) / len(values) for name, values in gates.items()}
    statuses = Counter(score.status for score in scores)
    figures |= {f"status/{status}": count / len(scores) for status, count in statuses.items()}
    return figures


def completion_text(completion: Any) -> str:
    """The reply text of a completion: a string as is; chat messages (TRL's conversational completions) as their
    assistant turns' text, joined; anything else as empty (which scores as an empty reply)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        turns = [m for m in completion if isinstance(m, Mapping) and m.get("role", "assistant") == "assistant"]
        return "\n".join(_content_text(m.get("content")) for m in turns)
    return ""


def _content_text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def reward_function(
    data: PreparedData | Path | str | Mapping[str, PreparedData] | None = None,
    objective: str = "rubric",
    *,
    floor: float | None = None,
    settings: RunSettings | None = None,
    workers: int | None = None,
    log_path: Path | str | None = None,
    max_completion_length: int | None = None,
    refuse_copies: bool = True,
) -> RewardFunction:
    """A TRL reward ``(prompts, completions, **kwargs) -> list[float]`` scoring completions with the harness.

    `data`: prepared data, a prepared folder, assets by name, or None (the bundled daily samples, prepared in the
    user's cache, as ``tasks.build_tasks`` uses them). `objective`: a registered objective (rubric, bounded in
    [0, 1], by default; composite reproduces the seed's 0.3 x compile + 0.7 x performance). `floor`: what a gated
    failure scores; default the objective's own floor, and required for an objective unbounded below (val_return,
    val_sharpe, robust), whose gated value is -inf. `settings`: the run settings scored under (fill, costs,
    timeout; default a run's). `workers`: completions scored at once (default one per core). `log_path`: a JSONL file
    each completion's status, components and gates are appended to. `max_completion_length`: the trainer's; a
    completion of that many tokens was cut there, so its unclosed code is not read as code. `refuse_copies`: a
    completion that resubmits its parent (up to names, comments and line order), or whose validation positions
    move with the parent's (evaluated once per parent and asset), scores as a `duplicate`, gated,
    instead of earning the parent's score: a policy rewarded for copying learns to copy (models copied the prompt's
    example 96% of the time in one experiment).
    """
    chosen = OBJECTIVES.get(objective)
    if floor is None:
        if not math.isfinite(chosen.gated):
            raise ConfigError(
                f"objective {objective} is unbounded below (a failed check scores {chosen.gated}), which a trainer "
                "cannot normalise: pass floor=..., or use rubric or composite"
            )
        floor = chosen.gated
    if not math.isfinite(floor):
        raise ConfigError(f"floor must be a finite number, got {floor!r}")

    return RewardFunction(
        as_assets(data),
        objective,
        floor=floor,
        settings=replace(settings or RunSettings(), objective=objective),
        workers=workers or os.cpu_count() or 1,
        log_path=Path(log_path) if log_path is not None else None,
        max_completion_length=max_completion_length,
        refuse_copies=refuse_copies,
    )


def _shut(executor: ThreadPoolExecutor, pool: SandboxPool) -> None:
    """Stop a reward's threads and sandbox (at close, or when it is collected or the interpreter exits)."""
    executor.shutdown(wait=True, cancel_futures=True)
    pool.close()
