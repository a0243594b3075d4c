"""A run directory, `train/<name>/`: every file of one run, and the commit protocol that makes resume exact.

Files: `trade.py` (the latest candidate that vets), `iter_<i>_trade.py` (a block that vets) or
`iter_<i>_rejected.txt` (one that does not: never a .py file), `iter_<i>_results.json`,
`iter_<i>_response.md` (the raw reply), `best_trade.py`, `learnings.md`, `config.json` (what
defines the run; never the API key), `state.json` and `journal.jsonl` (append-only events).

Commit protocol: an iteration writes its own files first and `state.json` last, atomically.
`state.json` is the commit point: iterations below its `next_iteration` are committed, anything
at or above it is debris of an interrupted iteration, removed on resume and redone once.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fileio import atomic_write_json, atomic_write_text, json_safe

DEFAULT_ROOT = Path("train")
STATE_VERSION = 1
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ITER_FILE = re.compile(r"iter_(\d+)_(trade\.py|rejected\.txt|results\.json|response\.md)")


class RunStatus(StrEnum):
    """Values of state.json's `status`."""

    RUNNING = "running"  # started or resumed, not known to have stopped (a killed run stays here)
    STOPPED = "stopped"  # stopped early and cleanly (Ctrl-C, endpoint error): resumable
    FINISHED = "finished"  # reached --max-iter or --max-fails


@dataclass(frozen=True)
class RunState:
    """The committed state of a run: enough to continue exactly where it stopped."""

    next_iteration: int = 0
    population: list[dict[str, Any]] = field(default_factory=list)
    fail_streak: int = 0
    next_parent: int | None = None  # chosen when the previous iteration committed
    rng: list[Any] = field(default_factory=list)
    status: str = RunStatus.RUNNING
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
    def from_dict(cls, raw: dict[str, Any]) -> RunState:
        """Rebuild from state.json."""
        if raw.get("version") != STATE_VERSION:
            raise ConfigError(f"state.json version {raw.get('version')} is not supported (expected {STATE_VERSION})")
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


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
        path = root / name
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise ConfigError(f"run {name!r} already exists in {root}/: choose another --name or `autotrade resume {name}`") from None
        return cls(path)

    @classmethod
    def open(cls, root: Path, name: str | None = None) -> RunDir:
        """An existing run by name, or the most recently started one when name is None."""
        if name is None:
            runs = list_runs(root)
            if not runs:
                raise ConfigError(f"no runs in {root}/: start one with `autotrade run`")
            return runs[-1]
        check_name(name)
        run = cls(root / name)
        if not run.config_path.is_file():
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
        """`iter_<i>_<kind>` where kind is trade.py, rejected.txt, results.json or response.md."""
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
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable ({exc})") from None

    def read_config(self) -> dict[str, Any]:
        """config.json as a dict."""
        return self.read_json(self.config_path)

    def read_state(self) -> RunState | None:
        """The committed state, or None before the first commit."""
        if not self.state_path.exists():
            return None
        return RunState.from_dict(self.read_json(self.state_path))

    def write_state(self, state: RunState) -> None:
        """Commit: write state.json atomically (always the last write of an iteration)."""
        self.write_json(self.state_path, state.to_dict())

    def read_record(self, iteration: int) -> dict[str, Any]:
        """One committed iteration's results record."""
        return self.read_json(self.iter_path(iteration, "results.json"))

    def records(self, below: int) -> list[dict[str, Any]]:
        """Records of the committed iterations 0..below-1, in order."""
        return [self.read_record(i) for i in range(below)]

    def discard_uncommitted(self, next_iteration: int) -> list[str]:
        """Remove iteration files at or above the commit point; return their names."""
        removed = []
        for path in sorted(self.path.iterdir()):
            match = ITER_FILE.fullmatch(path.name)
            if match and int(match.group(1)) >= next_iteration:
                path.unlink()
                removed.append(path.name)
        for temp in self.path.glob(".*.tmp*"):  # a temp file left by a write cut short
            temp.unlink(missing_ok=True)
        return removed

    # -- journal -------------------------------------------------------------------------------
    def journal(self, event: str, **fields: Any) -> None:
        """Append one event line; a line cut short by a kill is closed off first."""
        line = json.dumps(json_safe({"time": now_iso(), "event": event, **fields}), ensure_ascii=False, allow_nan=False)
        with open(self.journal_path, "a+b") as handle:
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            handle.write(line.encode("utf-8") + b"\n")
            handle.flush()

    def read_journal(self) -> list[dict[str, Any]]:
        """Every complete event, oldest first (a torn last line is skipped)."""
        if not self.journal_path.exists():
            return []
        events = []
        for line in self.journal_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    # -- one process at a time ---------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock; ConfigError when another process is running it."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"run {self.name!r} is being run by another process right now") from None
        try:
            yield
        finally:
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
    """Every run under root, oldest start first (by config.json's created_at, then name)."""
    if not root.is_dir():
        return []
    runs = []
    for path in root.iterdir():
        config = path / "config.json"
        if path.is_dir() and config.is_file():
            try:
                created = json.loads(config.read_text(encoding="utf-8")).get("created_at", "")
            except (OSError, json.JSONDecodeError):
                created = ""
            runs.append((str(created), path.name, RunDir(path)))
    return [run for _, _, run in sorted(runs, key=lambda t: (t[0], t[1]))]
