"""Plug-in registries: each choice of a flag (an objective, a policy) is a name, a one-line summary and a target.

The target, ``"package.module:ATTRIBUTE"``, is imported on first use only, so `--help` lists every choice with
its summary without loading numpy, pandas or openai, and adding a plug-in is its module plus one registry line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered plug-in: what `--help` says about it and where it lives."""

    summary: str  # one line for --help and error messages
    target: str  # "package.module:ATTRIBUTE", imported by Registry.get


class Registry(Generic[T]):
    """Plug-ins of one kind by name, in the order `--help` lists them."""

    def __init__(self, kind: str, entries: dict[str, Entry]) -> None:
        self.kind = kind  # "objective", "policy": how errors name a choice
        self.entries = entries

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registry order."""
        return tuple(self.entries)

    def check(self, name: str) -> str:
        """``name`` when registered; ValueError naming the choices otherwise (cheap: imports nothing)."""
        if name not in self.entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.entries)}")
        return name

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``, its module imported on first use; ValueError when unknown."""
        module, _, attribute = self.entries[self.check(name)].target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def help(self) -> str:
        """Each choice with its summary, for a flag's help text: 'a (what a does), b (what b does)'."""
        return ", ".join(f"{name} ({entry.summary})" for name, entry in self.entries.items())
