"""A run directory, `train/<name>/`: every file of one run, and the commit protocol that makes resume exact.

Files: `trade.py` (the latest candidate that vets), `iter_<i>_trade.py` (a block that vets) or
`iter_<i>_rejected.txt` (one that does not: never a .py file), `iter_<i>_results.json`,
`iter_<i>_prompt.md` (the first user turn a model was sent), `iter_<i>_response.md` (the raw reply),
`iter_<i>_repair_<k>.md` (the reply of its k-th repair turn), `iter_<i>_reasoning.md` and
`iter_<i>_repair_<k>_reasoning.md` (the server's separate reasoning of a turn, when it sent any), `best_trade.py`,
`learnings.md`, `config.json` (what defines the run; never the API key), `state.json` and `journal.jsonl`
(append-only events).

Commit protocol: an iteration writes its own files first and `state.json` last, atomically.
`state.json` is the commit point: iterations below its `next_iteration` are committed, anything
at or above it is debris of an interrupted iteration, removed on resume and redone once.

Every file is checked as it is read back (types and shapes), so that a hand edit or a damaged file is
one ConfigError naming the file and the key, never a traceback in whatever code used the value.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from autotrade.data.plan import Folds
from autotrade.data.prepared import Anonymization, PreparedData
from autotrade.engine.backtest import BacktestSettings, Fill
from autotrade.errors import AutotradeError, ConfigError
from autotrade.evaluation.evaluate import EvalSettings
from autotrade.fileio import append_line, atomic_write_json, atomic_write_text, json_safe, write_error
from autotrade.research.attempt import Attempt
from autotrade.research.config import RunSettings
from autotrade.research.population import rng_from_state
from autotrade.shapes import Kinds, check_object, describe, expect, schema_of

DEFAULT_ROOT = Path("train")
STATE_VERSION = 1
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ITER_FILE = re.compile(
    r"iter_(\d+)_(trade\.py|rejected\.txt|results\.json|prompt\.md|response\.md|reasoning\.md|repair_\d+(?:_reasoning)?\.md)"
)

# What decides an iteration's evaluation and score: kept in every results record (`evaluated_with`), so that
# a hand edit of config.json is refused instead of mixing the rules within one run.
EVALUATION_SETTINGS = (
    "fill",
    "cost_bps",
    "eval_timeout",
    "objective",
    "robust_k",
    "anonymize",
    "folds",
    "window_mode",
    "across",
)
EVALUATION_DATA = ("sha256", "val_start", "test_start")

_NULL = type(None)
# config.json: the parts the code reads, by section (a key missing from a section is filled by a default).
CONFIG_SCHEMA: dict[str, Kinds] = {
    "name": (str,),
    "created_at": (str,),
    "settings": (dict,),
    "policy": (str,),
    "model": (dict,),
    "data": (dict,),
    "prompts": (dict,),
    "start_source": (str,),
    "sandbox": (dict,),
}
CONFIG_REQUIRED = ("settings", "model", "data", "prompts", "start_source")
CONFIG_SECTIONS: dict[str, dict[str, Kinds]] = {
    "model": {
        "base_url": (str, _NULL),
        "model": (str, _NULL),
        "temperature": (float, _NULL),
        "max_tokens": (int, _NULL),
        "extra_body": (dict, _NULL),
        "timeout_s": (float, _NULL),
    },
    "data": {
        "sha256": (str,),
        "val_start": (str,),
        "test_start": (str,),
        "dir": (str,),
        "ticker": (str,),
        "research_bars": (int,),
    },
    "prompts": {"program": (str,), "template": (str,), "sources": (list,)},
}


class RunStatus(StrEnum):
    """Values of state.json's `status`."""

    # A live process holds the run's lock (RunDir.status). Never written to state.json: a process that dies
    # (killed, disk full) could not take that claim back.
    RUNNING = "running"
    STOPPED = "stopped"  # not running: resumable (stop_reason None when the process ended without a clean stop)
    FINISHED = "finished"  # reached --max-iter or --max-fails


@dataclass(frozen=True)
class RunState:
    """The committed state of a run: enough to continue exactly where it stopped."""

    next_iteration: int = 0
    population: list[dict[str, Any]] = field(default_factory=list)
    fail_streak: int = 0
    next_parent: int | None = None  # chosen when the previous iteration committed
    rng: list[Any] = field(default_factory=list)
    status: str = RunStatus.STOPPED
    stop_reason: str | None = None  # max_iter, max_fails, interrupted, endpoint_error
    best_iteration: int | None = None
    totals: dict[str, float] = field(default_factory=dict)  # tokens and seconds over all sessions
    # Private seed of the look-ahead gate's random cuts (never in a prompt or config.json), so that a
    # candidate cannot predict them and a redone iteration gets the same verdict. None: a run from before it.
    gate_secret: int | None = None
    updated_at: str = ""
    version: int = STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, source: object = "state.json") -> RunState:
        """Rebuild from state.json; ConfigError naming `source` and the key when a value has the wrong type or shape."""
        check_object(raw, schema_of(cls), source)
        if raw.get("version") != STATE_VERSION:
            raise ConfigError(
                f"{source}: version {describe(raw.get('version'))} is not supported (expected {STATE_VERSION})"
            )
        state = cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})
        done = state.next_iteration

        def committed(value: Any, key: str) -> None:
            if value is not None and not 0 <= value < done:
                raise ConfigError(f"{source}: {key} is {value}, not an iteration below next_iteration {done}")

        if done < 0 or state.fail_streak < 0:
            raise ConfigError(f"{source}: next_iteration and fail_streak must not be negative")
        if state.status not in {s.value for s in RunStatus}:
            raise ConfigError(f"{source}: status is {describe(state.status)}, not one of {', '.join(RunStatus)}")
        for n, member in enumerate(state.population):
            check_object(member, {"iteration": (int,), "score": (float,)}, source, f"population[{n}].")
            if not {"iteration", "score"} <= set(member):
                raise ConfigError(f"{source}: population[{n}] must hold an iteration and its score")
            committed(member["iteration"], f"population[{n}].iteration")
        committed(state.best_iteration, "best_iteration")
        committed(state.next_parent, "next_parent")
        for key, value in state.totals.items():
            expect(value, (float,), source, f"totals.{key}")
        try:
            rng_from_state(state.rng)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: rng is not a saved random generator state") from None
        return state


def evaluation_rules(settings: RunSettings, data: dict[str, Any]) -> dict[str, Any]:
    """The rules an iteration is evaluated under: the settings above and config.json's data identity."""
    return {**{k: getattr(settings, k) for k in EVALUATION_SETTINGS}, **{k: data.get(k) for k in EVALUATION_DATA}}


def data_identity(data: PreparedData) -> dict[str, Any]:
    """What pins the data of a run: the full CSV's sha256 and the split dates."""
    return {
        "sha256": str(data.meta.get("sha256")),
        "val_start": str(data.splits.val_start.date()),
        "test_start": str(data.splits.test_start.date()),
    }


def eval_settings(settings: RunSettings, state: RunState | None = None) -> EvalSettings:
    """The evaluation settings a run pins: its settings, and its state's gate secret (the seed for older runs)."""
    secret = state.gate_secret if state is not None and state.gate_secret is not None else settings.seed
    return EvalSettings(
        backtest=BacktestSettings(fill=Fill(settings.fill), cost_bps=settings.cost_bps),
        timeout_s=settings.eval_timeout,
        gate_secret=secret,
        folds=Folds(settings.folds, settings.window_mode) if settings.folds > 1 else None,
        across=settings.across,
    )


def anonymization(settings: RunSettings, state: RunState | None, data: PreparedData) -> Anonymization | None:
    """How an `--anonymize` run shows its data (from the run's private secret); None for a run that does not."""
    if not settings.anonymize:
        return None
    secret = state.gate_secret if state is not None and state.gate_secret is not None else settings.seed
    return Anonymization.from_secret(secret, data.frame.index[-1])


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def check_name(name: str) -> str:
    """A run name safe as one directory name, or ConfigError."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"run name {name!r}: use letters, digits, '.', '_' or '-' (no slashes), up to 128 characters")
    return name


def default_name(ticker: str, when: datetime | None = None) -> str:
    """`<ticker>-<YYYYmmdd-HHMMSS>` in local time."""
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]", "", ticker.replace("^", "")) or "run"
    return f"{safe}-{stamp}"


class RunDir:
    """One run's directory and its files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self._lock_fd: int | None = None

    @classmethod
    def create(cls, root: Path, name: str) -> RunDir:
        """Make a new, empty run directory; ConfigError if the name is taken."""
        check_name(name)
        run = cls(root / name)
        if not run._make() and not (run.unstarted() and not run.is_active()):
            raise run._taken()
        return run

    @classmethod
    def create_unique(cls, root: Path, stem: str) -> RunDir:
        """A new run directory `stem`, else `stem-2`, `stem-3`… (two runs started in the same second get two names)."""
        for n in itertools.count(1):
            run = cls(root / check_name(stem if n == 1 else f"{stem}-{n}"))
            if run._make():
                return run
        raise AssertionError("unreachable")

    def _make(self) -> bool:
        """Create the directory; False when it exists already."""
        try:
            self.path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            return False
        except OSError as exc:
            raise write_error(self.path, exc, 0) from None
        return True

    def _taken(self) -> ConfigError:
        return ConfigError(
            f"run {self.name!r} already exists in {self.path.parent}/: choose another --name or "
            f"`autotrade resume {self.name}`"
        )

    def claim(self) -> None:
        """Under the lock, before a start's first write: ConfigError if another start got here first, and a failed
        start's journal lines gone."""
        if not self.unstarted():
            raise self._taken()
        self.journal_path.unlink(missing_ok=True)

    def unstarted(self) -> bool:
        """True when nothing of the run was committed: no state.json and no iteration files (a start that failed)."""
        try:
            return not self.state_path.exists() and not self.iteration_files()
        except OSError:
            return False

    def discard_unstarted(self) -> None:
        """Remove what a start that failed before iteration 0 wrote, and the directory when nothing else is in it."""
        for path in (
            self.config_path,
            self.state_path,
            self.journal_path,
            self.path / ".lock",
            *self.path.glob(".*.tmp*"),
        ):
            path.unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            pass  # the user keeps something of their own there

    @classmethod
    def open(cls, root: Path, name: str | None = None, notify: Callable[[str], None] | None = None) -> RunDir:
        """An existing run by name, or the most recently started one that is not damaged when name is None.

        `notify` hears one line for each newer run passed over because it is damaged.
        """
        if name is None:
            runs = list_runs(root)
            if not runs:
                raise ConfigError(f"no runs in {root}/: start one with `autotrade run`")
            for run in reversed(runs):
                problem = run.problem()
                if problem is None:
                    return run
                if notify is not None:
                    notify(f"note: skipping run {run.name}, which is damaged: {problem}")
            raise ConfigError(f"every run in {root}/ is damaged (see `autotrade runs`): name one to see why")
        check_name(name)
        run = cls(root / name)
        if not run.config_path.exists():
            known = ", ".join(r.name for r in list_runs(root)[-5:]) or "none"
            raise ConfigError(f"no run named {name!r} in {root}/ (recent: {known})")
        return run

    # -- paths -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        """config.json: what defines the run."""
        return self.path / "config.json"

    @property
    def state_path(self) -> Path:
        """state.json: the commit point."""
        return self.path / "state.json"

    @property
    def journal_path(self) -> Path:
        """journal.jsonl: append-only events."""
        return self.path / "journal.jsonl"

    @property
    def learnings_path(self) -> Path:
        """learnings.md."""
        return self.path / "learnings.md"

    @property
    def trade_path(self) -> Path:
        """trade.py: the latest candidate, runnable with `python trade.py`."""
        return self.path / "trade.py"

    @property
    def best_path(self) -> Path:
        """best_trade.py: the current best."""
        return self.path / "best_trade.py"

    def iter_path(self, iteration: int, kind: str) -> Path:
        """`iter_<i>_<kind>` where kind is trade.py, rejected.txt, results.json, prompt.md, response.md, reasoning.md,
        repair_<k>.md or repair_<k>_reasoning.md."""
        return self.path / f"iter_{iteration}_{kind}"

    # -- files ---------------------------------------------------------------------------------
    def write_text(self, path: Path, text: str) -> None:
        """Atomic write (temp file, then rename)."""
        atomic_write_text(path, text)

    def write_json(self, path: Path, obj: Any) -> None:
        """Atomic strict-JSON write."""
        atomic_write_json(path, obj)

    def read_json(self, path: Path) -> Any:
        """Parse a JSON file of this run; ConfigError naming it when unreadable."""
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: missing (is {self.path} a run directory?)") from None
        except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
            raise ConfigError(f"{path}: unreadable ({exc})") from None

    def read_config(self) -> dict[str, Any]:
        """config.json as a dict, checked: ConfigError naming the key a hand edit broke."""
        path = self.config_path
        config = check_object(self.read_json(path), CONFIG_SCHEMA, path)
        for key in CONFIG_REQUIRED:
            if key not in config:
                raise ConfigError(f"{path}: {key} is missing")
        for section, schema in CONFIG_SECTIONS.items():
            check_object(config[section], schema, path, f"{section}.")
        for key in ("program", "template"):
            if key not in config["prompts"]:
                raise ConfigError(f"{path}: prompts.{key} is missing")
        RunSettings.from_dict(config["settings"], source=path)
        return config

    def read_state(self) -> RunState | None:
        """The committed state, or None before the first commit."""
        if not self.state_path.exists():
            return None
        return RunState.from_dict(self.read_json(self.state_path), source=self.state_path)

    def committed_state(self) -> RunState:
        """The committed state; ConfigError saying what is there, and what to do, when state.json is missing."""
        state = self.read_state()
        if state is not None:
            return state
        done = sorted(i for i, path in self.iteration_files() if path.name.endswith("_results.json"))
        if not done:
            raise ConfigError(
                f"run {self.name!r} never started (no state.json, no iterations): start it again with "
                f"`autotrade run --name {self.name}` and the flags you want"
            )
        # Not rebuilt from the records: state.json alone holds the run's private gate secret (the look-ahead
        # gate's cuts and an --anonymize run's view of the data) and the random stream, which no record keeps.
        raise ConfigError(
            f"{self.state_path} is missing, though {len(done)} iterations ({done[0]}-{done[-1]}) have results: "
            f"it is the run's commit point and alone holds its private gate secret, so the run cannot go on without "
            f"it; restore it from a backup, or start a new run from the best so far with "
            f"`autotrade run --from {self.best_path}`"
        )

    def check(self) -> None:
        """ConfigError when this run cannot be resumed or reported: a damaged file, a start that never committed,
        a state behind the iterations it committed."""
        config = self.read_config()
        state = self.committed_state()
        records = self.records(state.next_iteration)
        self.check_commit_point(state.next_iteration)
        self._check_rules(evaluation_rules(RunSettings.from_dict(config["settings"]), config["data"]), records)

    def _check_rules(self, rules: dict[str, Any], attempts: list[Attempt]) -> None:
        """ConfigError naming the config.json key whose value differs from the one committed iterations were
        evaluated with."""
        for attempt in attempts:
            recorded = attempt.evaluated_with  # empty in records of older versions
            for key, value in rules.items():
                if key in recorded and recorded[key] != value:
                    section = "settings" if key in EVALUATION_SETTINGS else "data"
                    raise ConfigError(
                        f"{self.config_path}: {section}.{key} is {describe(value)}, but iteration {attempt.iteration} "
                        f"was evaluated with {describe(recorded[key])}: a run's evaluation rules cannot change; "
                        f"restore the value, or start a new run from the best so far with "
                        f"`autotrade run --from {self.best_path}`"
                    )

    def problem(self) -> str | None:
        """Why this run cannot be resumed or reported (see check), or None."""
        try:
            self.check()
        except AutotradeError as exc:
            return str(exc)
        return None

    def write_state(self, state: RunState) -> None:
        """Commit: write state.json atomically (always the last write of an iteration)."""
        self.write_json(self.state_path, state.to_dict())

    def read_record(self, iteration: int) -> Attempt:
        """One committed iteration's attempt, checked: ConfigError naming the file and the key a hand edit broke."""
        path = self.iter_path(iteration, "results.json")
        if not path.exists():
            raise ConfigError(f"{path}: missing, though state.json counts iteration {iteration} as committed")
        attempt = Attempt.from_json(self.read_json(path), path)
        if attempt.iteration != iteration:
            raise ConfigError(f"{path}: iteration is {attempt.iteration}, not {iteration}")
        return attempt

    def write_record(self, attempt: Attempt) -> None:
        """Write an iteration's iter_<i>_results.json (atomically)."""
        self.write_json(self.iter_path(attempt.iteration, "results.json"), attempt.to_json())

    def records(self, below: int) -> list[Attempt]:
        """Attempts of the committed iterations 0..below-1, in order."""
        return [self.read_record(i) for i in range(below)]

    def iteration_files(self) -> list[tuple[int, Path]]:
        """Every `iter_<i>_*` file with its iteration, by name."""
        return [
            (int(m.group(1)), path) for path in sorted(self.path.iterdir()) if (m := ITER_FILE.fullmatch(path.name))
        ]

    def check_commit_point(self, next_iteration: int) -> None:
        """ConfigError when iterations at or above `next_iteration` were committed (so must never be discarded).

        Only one iteration is ever in flight, so debris is iteration `next_iteration`'s alone. Files of a later
        iteration, or a journal that logged a commit at or above it, mean state.json was edited or restored from an
        older copy.
        """
        logged = {e.get("iteration") for e in self.read_journal() if e.get("event") == "iteration_committed"}
        beyond = sorted(
            {i for i, _ in self.iteration_files() if i > next_iteration}
            | {i for i in logged if isinstance(i, int) and i >= next_iteration}
        )
        if beyond:
            raise ConfigError(
                f"{self.state_path}: next_iteration is {next_iteration}, but iterations {beyond[0]}-{beyond[-1]} "
                f"exist and were committed: state.json was edited or restored from an older copy; nothing was deleted: "
                f"restore the state.json that goes with them (next_iteration {beyond[-1] + 1})"
            )

    def discard_uncommitted(self, next_iteration: int) -> list[str]:
        """Remove iteration files at or above the commit point (after check_commit_point); return their names."""
        self.check_commit_point(next_iteration)
        removed = []
        for i, path in self.iteration_files():
            if i >= next_iteration:
                path.unlink()
                removed.append(path.name)
        for temp in self.path.glob(".*.tmp*"):  # a temp file left by a write cut short
            temp.unlink(missing_ok=True)
        return removed

    # -- journal -------------------------------------------------------------------------------
    def journal(self, event: str, **fields: Any) -> None:
        """Append one event line; a line cut short by a kill is closed off first."""
        line = json.dumps(json_safe({"time": now_iso(), "event": event, **fields}), ensure_ascii=False, allow_nan=False)
        append_line(self.journal_path, line.encode("utf-8"))

    def read_journal(self) -> list[dict[str, Any]]:
        """Every complete event, oldest first (a torn last line, or one that is no event object, is skipped)."""
        if not self.journal_path.exists():
            return []
        try:
            text = self.journal_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ConfigError(f"{self.journal_path}: unreadable ({exc})") from None
        events = []
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    # -- one process at a time ---------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock (again, when this object holds it already); ConfigError when another process runs it."""
        if self._lock_fd is not None:
            yield
            return
        lock = self.path / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(lock, exc, 0) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"run {self.name!r} is being run by another process right now") from None
        self._lock_fd = fd
        try:
            yield
        finally:
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def is_active(self) -> bool:
        """True while some process holds the run's lock (the OS releases it when that process dies)."""
        lock = self.path / ".lock"
        if not lock.exists():
            return False
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def status(self) -> str:
        """running (a live process holds it), finished, or stopped (cleanly or killed)."""
        if self.is_active():
            return RunStatus.RUNNING
        state = self.read_state()
        if state is not None and state.status == RunStatus.FINISHED:
            return RunStatus.FINISHED
        return RunStatus.STOPPED


def list_runs(root: Path = DEFAULT_ROOT) -> list[RunDir]:
    """Every run under root, oldest start first (by config.json's created_at, else its modification time, then name)."""
    if not root.is_dir():
        return []
    runs = []
    for path in root.iterdir():
        config = path / "config.json"
        if path.is_dir() and config.exists():
            try:
                raw = json.loads(config.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raw = None  # damaged: listed, and `runs` says why
            created = raw.get("created_at") if isinstance(raw, dict) else None
            if not isinstance(created, str):
                created = datetime.fromtimestamp(config.stat().st_mtime, UTC).isoformat()
            runs.append((created, path.name, RunDir(path)))
    return [run for _, _, run in sorted(runs, key=lambda t: (t[0], t[1]))]
