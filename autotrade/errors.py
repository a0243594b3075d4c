"""The one exception tree, split by who must act.

AutotradeError                 handled at the outermost level: one line on stderr, non-zero exit
 ├── ConfigError               the user must fix a flag, a .env value or a file
 ├── DataError                 the data is missing or malformed
 ├── EndpointError             the model server is unreachable or refused the request
 ├── SandboxError              the sandbox itself could not run a candidate (the machine's fault, not the block's)
 ├── StorageError              a file could not be written (disk full, read-only): make room or fix permissions
 ├── ReplyError                the model's reply holds no usable code (an outcome: journaled, loop goes on)
 ├── UnsafeCodeError           vetting rejected the candidate (an outcome)
 └── CandidateError            the candidate crashed, timed out or looked ahead (an outcome)
"""


class AutotradeError(Exception):
    """Base of every error the tool expects; anything else is a bug and keeps its traceback."""


class ConfigError(AutotradeError):
    """A flag, a setting or a user file is wrong; the message says what to change."""


class DataError(AutotradeError):
    """Market data is missing or malformed; the message names the file, column and line."""


class EndpointError(AutotradeError):
    """The OpenAI-compatible endpoint could not be reached or refused the request."""

    def __init__(self, message: str, *, deadline_hit: bool = False, unreachable: bool = False) -> None:
        super().__init__(message)
        self.deadline_hit = deadline_hit  # a request was abandoned at its deadline (OPENAI_TIMEOUT)
        self.unreachable = unreachable  # nothing listens there (refused, unknown host): another endpoint may serve


class SandboxError(AutotradeError):
    """The sandbox could not start or set up a worker: no candidate code ran, so no candidate is to blame."""


class StorageError(AutotradeError):
    """A file could not be written; the message names the path and, for a full disk, the space needed."""


class ReplyError(AutotradeError):
    """The model's reply held no usable candidate."""

    def __init__(self, message: str, status: str = "parse_error") -> None:
        super().__init__(message)
        self.status = status


class UnsafeCodeError(AutotradeError):
    """The candidate uses something outside the allowed surface."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class CandidateError(AutotradeError):
    """The candidate failed at run time (crash, timeout, memory, look-ahead, bad signal)."""

    def __init__(self, message: str, status: str, error_type: str | None = None, traceback: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.traceback = traceback
