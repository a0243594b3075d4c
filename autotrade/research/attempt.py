"""One iteration's attempt: what was proposed, how it was evaluated, and what the selection made of it.

An `Attempt` is what `iter_<i>_results.json` holds, typed; its JSON form keeps that file's keys, values and
order exactly as earlier versions wrote them, so older run directories stay readable and new ones look the
same. The model call behind a proposal is a `Turn` of its own (the starting trade.py has none); a reply that
failed and was repaired in the same conversation (--repair) adds a turn for each repair. The first turn's keys
sit in the record as they always did; the later turns are the list `repairs`, present only when there were any,
each holding a turn's keys and the error that prompted it (`error_status`, `error`).

Which keys a record holds says what happened: the evaluation's own keys (`warnings`, `suspicious`,
`deferred_cuts`, `output`) only when a block was evaluated, the model call's keys only when there was one,
and `reply_source` / `kept_from_parent` only when its reply held usable code; `structure` when its block parsed,
`twin`, `twin_correlation` and `saved_s` only for a duplicate, `positions` only for an ok one;
`families` only when its block parsed in a run that watches for a collapse (--collapse-window), `nudged` only
when its prompt said it had collapsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autotrade.errors import ConfigError
from autotrade.shapes import Kinds, check_object, describe, expect, schema_of
from autotrade.status import Status


@dataclass(frozen=True)
class Turn:
    """One model call: the prompt and reply sizes, what it cost, and how its reply read."""

    model: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False  # the server reported no usage, or the reply was stopped early: tokens from the text
    latency_s: float = 0.0
    prompt_chars: int = 0
    reply_chars: int = 0
    reasoning_chars: int = 0
    deadline_hits: int = 0  # requests abandoned at the deadline before the one that answered
    reply_source: str | None = None  # where the code came from ("python-block", "json", "bare"); None: no usable code
    kept_from_parent: tuple[str, ...] = ()  # functions the reply left out, taken from the parent
    early_stop: str | None = None  # why reading the stream stopped before the server finished; None: it finished
    received_chars: int = 0  # what had arrived (content and reasoning, as sent) when reading stopped early
    error_status: str | None = None  # a repair turn: the status of the failure before it; None: the first turn
    error: str | None = None  # a repair turn: the error text the model was sent (exactly)

    def to_json(self) -> dict[str, Any]:
        """The turn's keys of a results record."""
        parsed = {"reply_source": self.reply_source, "kept_from_parent": list(self.kept_from_parent)}
        cut = {"early_stop": self.early_stop, "received_chars": self.received_chars}
        prompted = {"error_status": self.error_status, "error": self.error}
        return {
            "model": self.model,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "usage_estimated": self.usage_estimated,
            "latency_s": self.latency_s,
            "prompt_chars": self.prompt_chars,
            "reply_chars": self.reply_chars,
            "reasoning_chars": self.reasoning_chars,
            "deadline_hits": self.deadline_hits,
            **(parsed if self.reply_source is not None else {}),
            **(cut if self.early_stop is not None else {}),
            **(prompted if self.error is not None else {}),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Turn | None:
        """The turn a (checked) results record holds, or None when it records no model call."""
        keys = [k for k in cls.__dataclass_fields__ if k in raw]
        if not keys:
            return None
        values = {k: raw[k] for k in keys}
        if "kept_from_parent" in values:
            values["kept_from_parent"] = tuple(values["kept_from_parent"])
        return cls(**values)


@dataclass(frozen=True)
class Attempt:
    """One committed iteration: its proposal, evaluation and selection (iter_<i>_results.json, typed).

    Window metrics are the evaluation's JSON-safe figures (a non-finite number is None); `objective` is the
    run's score of it (None unless ok). `turns` is empty for the starting trade.py (iteration 0).
    """

    iteration: int
    status: Status
    parent: int | None = None  # None: the starting trade.py
    policy: str = "model"
    evaluated_with: dict[str, Any] = field(default_factory=dict)  # the rules it was evaluated under (rundir)
    message: str = ""
    error_type: str | None = None
    traceback: str = ""
    windows: dict[str, dict[str, float | None]] = field(default_factory=dict)  # aggregated over parts when several
    parts: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)  # asset/fold -> windows
    columns: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # mistakes the sandbox forgave
    suspicious: tuple[str, ...] = ()  # why the result is implausible for its data (a warning, never a gate)
    deferred_cuts: int = 0  # look-ahead cuts left to check when it was scored
    output: str = ""  # what the candidate printed
    timings: dict[str, float] = field(default_factory=dict)
    eval_s: float = 0.0
    block: str | None = None  # the agent block evaluated; None when the reply held none
    structure: str | None = None  # the block's structure up to cosmetics (novelty.block_structure); None: no block
    twin: int | None = None  # a duplicate: the earlier iteration it repeats
    twin_correlation: float | None = None  # a duplicate by positions: their correlation; None: by structure
    saved_s: float = 0.0  # a structure twin's evaluation seconds its result reused instead of running again
    positions: str | None = None  # ok: the validation positions (novelty.encode_positions), what later ones must beat
    families: tuple[str, ...] | None = None  # its block's indicator families (evaluation.families); None: not recorded
    train_return: float | None = None
    val_return: float | None = None
    objective_name: str = "val_return"
    objective: float | None = None
    entered_population: bool = False
    population: tuple[int, ...] = ()  # the members after it, best first
    fail_streak: int = 0  # after it
    next_parent: int | None = None
    hypothesis: str = ""
    nudged: bool = False  # its prompt said the search had collapsed and asked for another family
    turns: tuple[Turn, ...] = ()
    started_at: str = ""
    finished_at: str = ""

    @property
    def ok(self) -> bool:
        """True when the candidate passed every gate."""
        return self.status is Status.OK

    @property
    def structure_twin(self) -> bool:
        """A duplicate of an earlier strategy's structure (its result reused unless it was already running)."""
        return self.twin is not None and self.twin_correlation is None

    @property
    def position_twin(self) -> bool:
        """A duplicate whose validation positions move with a population member's."""
        return self.twin is not None and self.twin_correlation is not None

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens over its turns."""
        return sum(t.prompt_tokens for t in self.turns)

    @property
    def completion_tokens(self) -> int:
        """Completion tokens over its turns."""
        return sum(t.completion_tokens for t in self.turns)

    @property
    def latency_s(self) -> float:
        """Seconds spent waiting for the model over its turns."""
        return sum(t.latency_s for t in self.turns)

    @property
    def repair_turns(self) -> tuple[Turn, ...]:
        """The turns after the first: each answered an error sent back in the same conversation (--repair)."""
        return self.turns[1:]

    @property
    def repaired(self) -> bool:
        """True when repair saved it: ok after at least one repair turn (a failed iteration otherwise)."""
        return self.ok and bool(self.repair_turns)

    @property
    def usage_estimated(self) -> bool:
        """True when some turn's tokens were counted from the text (the server reported none)."""
        return any(t.usage_estimated for t in self.turns)

    def metric(self, window: str, name: str) -> float | None:
        """One metric of one window, or None when that window did not run."""
        return (self.windows.get(window) or {}).get(name)

    def to_json(self) -> dict[str, Any]:
        """iter_<i>_results.json: the keys, values and order every version has written (and `repairs` after the
        first turn's keys when there were repair turns)."""
        repairs = {"repairs": [turn.to_json() for turn in self.repair_turns]}
        twinned = {"twin": self.twin, "twin_correlation": self.twin_correlation, "saved_s": self.saved_s}
        evaluated = {
            "warnings": list(self.warnings),
            "suspicious": list(self.suspicious),
            "deferred_cuts": self.deferred_cuts,
            "output": self.output,
        }
        return {
            "iteration": self.iteration,
            "parent": self.parent,
            "policy": self.policy,
            "evaluated_with": self.evaluated_with,
            "status": self.status.value,
            "message": self.message,
            "error_type": self.error_type,
            "traceback": self.traceback,
            "windows": self.windows,
            **({"parts": self.parts} if self.parts else {}),
            "columns": list(self.columns),
            **(evaluated if self.block is not None else {}),
            "timings": self.timings,
            "eval_s": self.eval_s,
            "block": self.block,
            **({"structure": self.structure} if self.structure is not None else {}),
            **(twinned if self.twin is not None else {}),
            **({"positions": self.positions} if self.positions is not None else {}),
            **({"families": list(self.families)} if self.families is not None else {}),
            "train_return": self.train_return,
            "val_return": self.val_return,
            "objective_name": self.objective_name,
            "objective": self.objective,
            "entered_population": self.entered_population,
            "population": list(self.population),
            "fail_streak": self.fail_streak,
            "next_parent": self.next_parent,
            "hypothesis": self.hypothesis,
            **({"nudged": True} if self.nudged else {}),
            **(self.turns[0].to_json() if self.turns else {}),
            **(repairs if self.repair_turns else {}),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_json(cls, raw: Any, source: object = "iter_<i>_results.json") -> Attempt:
        """Rebuild from a results record; ConfigError naming `source` and the key a hand edit broke.

        A key an older version did not write takes its default.
        """
        check_object(raw, RECORD_SCHEMA, source)
        for key in ("iteration", "status"):
            if key not in raw:
                raise ConfigError(f"{source}: {key} is missing")
        if raw["status"] not in {s.value for s in Status}:
            raise ConfigError(f"{source}: status is {describe(raw['status'])}, not one of {', '.join(Status)}")
        for window, metrics in raw.get("windows", {}).items():
            _check_metrics(metrics, source, f"windows.{window}.")
        for label, windows in raw.get("parts", {}).items():
            for window, metrics in check_object(windows, {}, source, f"parts.{label}.").items():
                _check_metrics(metrics, source, f"parts.{label}.{window}.")
        values = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw and k != "turns"}  # turns: flattened
        values["status"] = Status(raw["status"])
        if not all(isinstance(f, str) for f in raw.get("families") or ()):
            raise ConfigError(f"{source}: families is {describe(raw['families'])}, not a list of family names")
        for key in ("columns", "warnings", "suspicious", "population", "families"):
            if key in values:
                values[key] = tuple(values[key])
        turn = Turn.from_json(raw)
        repairs = []
        for k, entry in enumerate(raw.get("repairs", []), 1):
            check_object(entry, TURN_SCHEMA, source, f"repairs[{k - 1}].")
            if turn is None or not isinstance(entry.get("error"), str):
                raise ConfigError(f"{source}: repairs[{k - 1}] must follow a model turn and hold its error")
            repair = Turn.from_json(entry)
            assert repair is not None  # it holds `error`, a turn's key
            repairs.append(repair)
        return cls(**values, turns=() if turn is None else (turn, *repairs))


def _check_metrics(metrics: Any, source: object, prefix: str) -> None:
    """ConfigError unless `metrics` maps names to numbers or null (a non-finite figure is written as null): scoring a
    record again (`autotrade export`) reads them as numbers."""
    for name, value in check_object(metrics, {}, source, prefix).items():
        expect(value, (float, type(None)), source, f"{prefix}{name}")


TURN_SCHEMA: dict[str, Kinds] = schema_of(Turn)
# What a results record may hold, key by key: the attempt's fields (its first turn flattened into the record).
RECORD_SCHEMA: dict[str, Kinds] = {
    **{k: v for k, v in schema_of(Attempt).items() if k != "turns"},
    **{k: v for k, v in TURN_SCHEMA.items() if k not in ("error_status", "error")},
    "repairs": (list,),
}
