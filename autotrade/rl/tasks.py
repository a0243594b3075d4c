"""The prompts a policy model is trained on: a run's first proposal prompt, per asset and starting strategy.

Each task is the prompt iteration 1 of a real run would send (``research.loop.render_proposal``): the starting
strategy evaluated as the run's iteration 0, shown as its population and last outcome, with the asset's columns,
sample rows and the objective's sentence. Only the research windows (train and validation) are ever rendered or
scored; the held-out test window stays as unseen as it is in a run.

Starting strategies: the packaged baseline (start 0) and random strategies drawn from a seeded generator (the random
policy's, ``propose.policies.random_search``), so a dataset of N starts is the same on every machine.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotrade.candidate import baseline_source, extract_block
from autotrade.data.prepared import PreparedData, load_prepared, prepare_data
from autotrade.evaluation.score import score_code
from autotrade.fileio import json_safe
from autotrade.propose.policies.random_search import random_strategy
from autotrade.propose.prompts import PromptFiles, load_prompt_files, messages
from autotrade.research.attempt import Attempt
from autotrade.research.config import RunSettings
from autotrade.research.loop import render_proposal, window_return
from autotrade.research.rundir import eval_settings
from autotrade.sandbox.pool import SandboxPool
from autotrade.status import Status

DEFAULT_ASSETS = ("sp500", "nasdaq", "goog")  # the bundled daily series (eurusd is hourly, btcusd monthly)


@dataclass(frozen=True)
class Task:
    """One prompt: the asset it is scored on, the starting strategy it improves, and the first user turn."""

    asset: str
    start: int  # 0: the packaged baseline; k > 0: the k-th random strategy of the dataset's seed
    parent_block: str  # functions a reply leaves out come from here, as in a run
    prompt: str

    def row(self) -> dict[str, Any]:
        """The task as a dataset row: `prompt` as chat messages (TRL's conversational format, verifiers' too) and
        the columns a reward reads back (`asset`, `parent_block`) or a person filters on (`start`)."""
        return {
            "prompt": messages(self.prompt),
            "asset": self.asset,
            "parent_block": self.parent_block,
            "start": self.start,
        }


def default_data_dir() -> Path:
    """Where bundled assets are prepared for training: the user's cache (XDG_CACHE_HOME, else ~/.cache)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "autotrade" / "rl"


def prepare_assets(
    names: Iterable[str] = DEFAULT_ASSETS, data_dir: Path | str | None = None
) -> dict[str, PreparedData]:
    """Bundled samples prepared offline with their registered splits, one folder each under `data_dir` (default
    ``default_data_dir()``); a folder already prepared is read, not rewritten."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return {name: prepare_data(ticker=name, offline=True, data_dir=root / name) for name in names}


def as_assets(data: PreparedData | Path | str | Mapping[str, PreparedData] | None) -> dict[str, PreparedData]:
    """The assets a reward or dataset scores on, by name: prepared data, a prepared folder, a mapping, or None (the
    bundled daily samples, prepared in the cache)."""
    if data is None:
        return prepare_assets()
    if isinstance(data, PreparedData):
        return {data.name: data}
    if isinstance(data, str | Path):
        loaded = load_prepared(data)
        return {loaded.name: loaded}
    return dict(data)


def starting_blocks(count: int, seed: int = 0) -> list[str]:
    """`count` starting agent blocks: the packaged baseline, then random strategies drawn from `seed`."""
    rng = random.Random(seed)
    blocks = [extract_block(baseline_source())]
    blocks += [random_strategy(rng).block for _ in range(count - 1)]
    return blocks[:count]


def build_tasks(
    data: PreparedData | Path | str | Mapping[str, PreparedData] | None = None,
    *,
    starts: int = 4,
    seed: int = 0,
    settings: RunSettings | None = None,
    prompts: PromptFiles | None = None,
    pool: SandboxPool | None = None,
) -> list[Task]:
    """One task per asset × starting strategy, each evaluated once as its run's iteration 0 would be.

    `settings` are the run settings the prompt describes (objective, fill, costs; default a run's defaults with the
    rubric objective); `prompts`: the instruction and template (default: `prompts/` in the working directory, else
    the packaged ones, as `autotrade run` reads them); `pool` runs the starting strategies' evaluations (None: a pool
    for this call).
    """
    if starts < 1:
        raise ValueError(f"starts must be at least 1, got {starts}")
    settings = settings or RunSettings(objective="rubric")
    assets = as_assets(data)
    files = prompts or load_prompt_files()
    blocks = starting_blocks(starts, seed)
    tasks = []
    with SandboxPool() if pool is None else contextlib.nullcontext(pool) as sandbox:
        for name, prepared in assets.items():
            for start, block in enumerate(blocks):
                first = _iteration_zero(block, prepared, settings, sandbox)
                members = [first] if first.ok else []
                prompt = render_proposal(
                    files,
                    settings,
                    prepared.research_frame(),
                    [first],
                    members,
                    1,
                    0,
                    block,
                    [asset.name for asset in prepared.members],
                )
                tasks.append(Task(name, start, block, prompt))
    return tasks


def _iteration_zero(block: str, data: PreparedData, settings: RunSettings, pool: SandboxPool) -> Attempt:
    """A starting strategy as a run records its iteration 0: evaluated and scored on the research windows."""
    score = score_code(
        block,
        data,
        objective=settings.objective,
        settings=eval_settings(settings),
        robust_k=settings.robust_k,
        pool=pool,
    )
    windows = json_safe(score.windows)
    ok = score.status == Status.OK and score.passed
    return Attempt(
        iteration=0,
        status=Status(score.status),
        message=score.message,
        windows=windows,
        block=block,
        train_return=window_return(windows, "train"),
        val_return=window_return(windows, "val"),
        objective_name=settings.objective,
        objective=score.total if ok else None,
        entered_population=ok,
        population=(0,) if ok else (),
    )


def rows(tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """The tasks as dataset rows (``Task.row``), e.g. for ``datasets.Dataset.from_list``."""
    return [task.row() for task in tasks]
