"""The outcome of evaluating one candidate: every status, and what each means to the parts that read it.

A status is one member of `Status` plus its line in `_TRAITS`; the objectives, the report and the
sandbox read what they need from here, so adding one touches this file alone. It imports nothing
heavy: objectives and the sandbox child use it without loading the evaluation stack.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Status(StrEnum):
    """The outcome of evaluating one candidate (a StrEnum: records hold the plain strings)."""

    OK = "ok"
    EMPTY = "empty"  # the reply had no content at all
    TRUNCATED = "truncated"  # the reply hit the token limit (finish_reason "length") before closing a code block
    PARSE_ERROR = "parse_error"  # the reply held no usable code
    SYNTAX_ERROR = "syntax_error"  # the block does not compile
    REJECTED = "rejected"  # vetting refused something outside the allowed surface
    RUNTIME_ERROR = "runtime_error"  # the candidate raised
    TIMEOUT = "timeout"  # killed after the wall-clock or CPU limit
    MEMORY = "memory"  # killed at the address-space limit
    BAD_SIGNAL = "bad_signal"  # a signal other than -1/0/1 (or NaN/None for hold)
    LOOKAHEAD = "lookahead"  # features or signals change when later bars are removed
    NO_TRADES = "no_trades"  # never trades in the validation window: a do-nothing strategy
    NAN_EQUITY = "nan_equity"  # the equity curve is not finite
    DUPLICATE = "duplicate"  # repeats an earlier strategy: its structure, or a population member's positions

    @property
    def label(self) -> str:
        """How the report's failure taxonomy names it."""
        return _TRAITS[self].label

    @property
    def invalid_code(self) -> bool:
        """The code never produced a usable strategy (the rubric's hard gate on valid code)."""
        return _TRAITS[self].invalid_code

    @property
    def from_worker(self) -> bool:
        """A sandboxed worker child may report it (anything else from a child is malformed)."""
        return _TRAITS[self].from_worker

    @property
    def repairable(self) -> bool:
        """An error message back in the same conversation may fix it (--repair): the reply could not be read, or its
        code was refused or raised. Not a look-ahead, a timeout or the memory limit (the model wrote what it meant,
        and it does not know better from being told), a truncated reply (resent, the cut reply eats the same token
        limit), nor a strategy that ran but does nothing useful."""
        return _TRAITS[self].repairable

    @property
    def ran(self) -> bool:
        """The candidate's code ran on the data (and failed or not): a trial the Deflated Sharpe Ratio's N counts.
        Not a reply without code, a block refused or that does not compile, nor one reused without running."""
        return _TRAITS[self].ran


class _Traits(NamedTuple):
    label: str
    invalid_code: bool
    from_worker: bool
    repairable: bool
    ran: bool = False  # unless a status says so it adds no trial: a twin reused without running must not inflate N


_TRAITS: dict[Status, _Traits] = {
    Status.OK: _Traits("ok", False, True, False, ran=True),
    Status.EMPTY: _Traits("empty reply", True, False, True),
    Status.TRUNCATED: _Traits("truncated reply", True, False, False),
    Status.PARSE_ERROR: _Traits("unparseable reply", True, False, True),
    Status.SYNTAX_ERROR: _Traits("SyntaxError", True, True, True),
    Status.REJECTED: _Traits("rejected by vetting", True, False, True),
    Status.RUNTIME_ERROR: _Traits("runtime error", True, True, True, ran=True),
    Status.TIMEOUT: _Traits("timeout", True, True, False, ran=True),
    Status.MEMORY: _Traits("out of memory", True, True, False, ran=True),
    Status.BAD_SIGNAL: _Traits("bad signal", True, True, True, ran=True),
    Status.LOOKAHEAD: _Traits("look-ahead", False, True, False, ran=True),
    Status.NO_TRADES: _Traits("no trades", False, False, False, ran=True),
    Status.NAN_EQUITY: _Traits("NaN equity", False, False, False, ran=True),
    Status.DUPLICATE: _Traits("duplicate", False, False, False),
}
