"""Rollouts as data: every committed attempt of one or more runs as one JSON object, for SFT, DPO or GRPO.

A line holds what the model was asked and what it answered, and what the harness made of it:

- `messages`: the conversation sent for the attempt's last turn (the prompt, then for each repair the earlier reply
  and the error it was sent back), exactly as `propose.prompts.messages` built it for the server. None when no
  prompt is stored: the baseline (iteration 0, no model call), a policy that is not a model (random search reads no
  prompt), and runs written before the loop kept `iter_<i>_prompt.md`. A prompt is never re-rendered: today's
  templates and code could differ from what the model read.
- `block`: the agent block the harness evaluated (the reply's code with the functions it left out taken from its
  parent; the starting strategy for iteration 0; None when the reply held no usable code).
- `reply` (the last turn's text, reasoning left out), `reasoning` (the server's separate reasoning field, then any
  think-tagged reasoning of the reply; "" when none), `model`, `tokens` (prompt and completion over the turns, and
  per turn).
- `status`, `reward`, `components`, `gates`, `objective`: the reward of an ok attempt is the loop's own figure (its
  record's `objective`); any other attempt gets the objective's gated value (`evaluation.score.score_evaluation` of
  the evaluation rebuilt from its record), so a failure always scores below every passing attempt. Components and
  gates come from that score; an objective that reads equity curves (robust) has no components here, since records
  keep metrics, not curves. A non-finite number (the gated -inf of an unbounded objective) is null. An objective
  this version no longer has keeps an ok attempt's reward; any other attempt's is null, with no components.
- `run`, `iteration`, `parent`, `policy`, `entered_population`, `train_return`, `val_return`.

Records hold the research windows only (train and validation), and a line is built from the record's figures and the
turn files alone, never from `evaluated_with` (which names the test window's start): the held-out test window never
enters an export. Only committed iterations are read (below state.json's `next_iteration`): the debris of an
interrupted iteration is not an attempt.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from autotrade.errors import ConfigError
from autotrade.evaluation.across import DEFAULT_ACROSS
from autotrade.evaluation.evaluate import Evaluation
from autotrade.evaluation.objectives import OBJECTIVES
from autotrade.evaluation.score import DEFAULT_SCORE_OBJECTIVE, score_evaluation
from autotrade.fileio import json_safe
from autotrade.propose.prompts import messages
from autotrade.propose.reply import split_reasoning
from autotrade.research.attempt import Attempt
from autotrade.research.rundir import RunDir
from autotrade.status import Status


@dataclass(frozen=True)
class Export:
    """The lines an export kept, in run then iteration order, and how many attempts its filters left out."""

    lines: list[dict[str, Any]]
    runs: int
    filtered: int

    def jsonl(self) -> str:
        """One strict-JSON object per line."""
        return "".join(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n" for line in self.lines)


def export_runs(runs: Sequence[RunDir], *, only: Collection[Status] = (), min_reward: float | None = None) -> Export:
    """Every committed attempt of `runs` as an export line; `only`: keep these statuses (all when empty);
    `min_reward`: keep lines whose reward is at least this (a null reward never is). ConfigError for a damaged run."""
    if min_reward is not None and not math.isfinite(min_reward):
        raise ConfigError(f"--min-reward {min_reward}: must be a finite number")
    lines, filtered = [], 0
    for run in runs:
        for attempt in run.records(run.committed_state().next_iteration):
            line = attempt_line(run, attempt)
            if (only and attempt.status not in only) or (
                min_reward is not None and (line["reward"] is None or line["reward"] < min_reward)
            ):
                filtered += 1
            else:
                lines.append(line)
    return Export(lines, len(runs), filtered)


def attempt_line(run: RunDir, attempt: Attempt) -> dict[str, Any]:
    """One committed attempt of `run` as an export line (see the module docstring)."""
    i = attempt.iteration
    replies = [_read(run, i, f"repair_{k}.md" if k else "response.md") for k in range(len(attempt.turns))]
    prompt_path = run.iter_path(i, "prompt.md")
    conversation = None
    if attempt.turns and prompt_path.exists():
        # The turn after each earlier reply holds the error that reply was sent back with.
        repairs = [(split_reasoning(replies[k])[0], str(attempt.turns[k + 1].error)) for k in range(len(replies) - 1)]
        conversation = messages(_read(run, i, "prompt.md"), repairs)
    reply, reasoning = split_reasoning(replies[-1]) if replies else ("", "")
    separate = f"repair_{len(replies) - 1}_reasoning.md" if len(replies) > 1 else "reasoning.md"
    if replies and run.iter_path(i, separate).exists():  # the server sent reasoning apart from the reply
        reasoning = "\n\n".join(part for part in (_read(run, i, separate), reasoning) if part)
    # A run may name an objective this version no longer has: its ok attempts keep their recorded reward, and the
    # gates (every objective's) are read again, but nothing else can be scored.
    known = attempt.objective_name in OBJECTIVES.entries
    score = score_evaluation(_evaluation(attempt), attempt.objective_name if known else DEFAULT_SCORE_OBJECTIVE)
    return json_safe(
        {
            "run": run.name,
            "iteration": i,
            "parent": attempt.parent,
            "policy": attempt.policy,
            "model": attempt.turns[-1].model if attempt.turns else None,
            "messages": conversation,
            "reply": reply,
            "reasoning": reasoning,
            "block": attempt.block,
            "status": attempt.status.value,
            "objective": attempt.objective_name,
            "reward": attempt.objective if attempt.ok else (score.total if known else None),
            "components": score.components if known else {},
            "gates": score.gates,
            "entered_population": attempt.entered_population,
            "train_return": attempt.train_return,
            "val_return": attempt.val_return,
            "tokens": {
                "prompt": attempt.prompt_tokens,
                "completion": attempt.completion_tokens,
                "turns": [{"prompt": t.prompt_tokens, "completion": t.completion_tokens} for t in attempt.turns],
            },
        }
    )


def _read(run: RunDir, iteration: int, kind: str) -> str:
    """A committed iteration's text file; ConfigError naming it when it is missing or unreadable."""
    path = run.iter_path(iteration, kind)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing, though iteration {iteration} was committed with it") from None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8
        raise ConfigError(f"{path}: unreadable ({exc})") from None


def _evaluation(attempt: Attempt) -> Evaluation:
    """The evaluation a record keeps the figures of (a null metric was not finite), for scoring it again."""

    def metrics(windows: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float]]:
        return {name: {k: math.nan if v is None else v for k, v in m.items()} for name, m in windows.items()}

    return Evaluation(
        status=attempt.status,
        message=attempt.message,
        error_type=attempt.error_type,
        windows=metrics(attempt.windows),
        parts={label: metrics(windows) for label, windows in attempt.parts.items()},
        across=attempt.evaluated_with.get("across", DEFAULT_ACROSS),
    )
