"""A candidate is the agent block of a trade.py: the text between the two delimiter lines.

Every trade.py the product writes is safe to run or import: its GUARD line, just above the block,
hands the file to the sandbox (`python trade.py`) or refuses the import, so the block's code,
its top level, default arguments and decorators included, never runs in the user's own process.
"""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

from autotrade.contract import BLOCK_END, BLOCK_START, GUARD, GUARD_FUNCTION
from autotrade.errors import ConfigError


def is_delimiter_line(line: str) -> bool:
    """True for a line that is one of the two delimiters, whole (a longer dash comment is not one)."""
    return line.strip() in (BLOCK_START, BLOCK_END)


def _lines(source: str) -> list[tuple[int, str]]:
    """(offset, line without its newline) of every line, split on newlines only (as Python's parser counts them)."""
    found, offset = [], 0
    for line in source.split("\n"):
        found.append((offset, line))
        offset += len(line) + 1
    return found


def _block_bounds(source: str, where: str) -> tuple[int, int]:
    """Character offsets of the block: just after the start line, up to the end line (both matched as whole lines)."""
    body = None
    for offset, line in _lines(source):
        if body is None and line.strip() == BLOCK_START:
            body = offset + len(line) + 1
        elif body is not None and line.strip() == BLOCK_END:
            return body, offset
    if body is None:
        raise ConfigError(f"{where}: no start delimiter line '{BLOCK_START}'")
    if body > len(source):
        raise ConfigError(f"{where}: nothing follows the start delimiter")
    raise ConfigError(f"{where}: no end delimiter line '{BLOCK_END}' after the start delimiter")


def has_delimiters(source: str) -> bool:
    """True when the text holds both delimiter lines in order."""
    try:
        _block_bounds(source, "")
    except ConfigError:
        return False
    return True


def extract_block(source: str, where: str = "trade.py") -> str:
    """The agent block of a trade.py text, exactly as written."""
    body, end = _block_bounds(source, where)
    return source[body:end]


def splice_block(source: str, block: str, where: str = "trade.py") -> str:
    """Replace the agent block; every byte outside it stays as it was.

    A block holding a delimiter line would be re-read cut short from the file: refused.
    """
    if any(is_delimiter_line(line) for _, line in _lines(block)):
        raise ConfigError(f"{where}: the block holds a delimiter line")
    body, end = _block_bounds(source, where)
    if block and not block.endswith("\n"):
        block += "\n"
    return source[:body] + block + source[end:]


def runnable_source(skeleton: str, block: str, where: str = "trade.py") -> str:
    """`block` spliced into `skeleton`, with GUARD as the line just above the start delimiter.

    Raises ConfigError when the skeleton does not let the guard run before the block (a start
    delimiter inside a string or an indented suite, say): such a file is never written.
    """
    source = splice_block(skeleton, block, where)
    body, _ = _block_bounds(source, where)
    start = source.rfind("\n", 0, body - 1) + 1  # the start delimiter line
    if not source[:start].endswith(GUARD + "\n"):
        source = source[:start] + GUARD + "\n" + source[start:]
        start += len(GUARD) + 1
    _check_guard_runs_first(source, source.count("\n", 0, start), where)
    return source


def is_guarded(source: str) -> bool:
    """True when the whole line just above the start delimiter is GUARD, as runnable_source writes it."""
    try:
        body, _ = _block_bounds(source, "")
    except ConfigError:
        return False
    start = source.rfind("\n", 0, body - 1) + 1
    above = source.rfind("\n", 0, max(0, start - 1)) + 1
    return source[above:start] == GUARD + "\n"


def _check_guard_runs_first(source: str, guard_line: int, where: str) -> None:
    """The guard (1-based line `guard_line`) is a top-level statement that nothing before it spans past."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(f"{where}: the file around the block does not parse ({exc})") from None
    calls = [
        stmt
        for stmt in tree.body
        if stmt.lineno == guard_line
        and isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and getattr(stmt.value.func, "id", None) == GUARD_FUNCTION
    ]
    earlier = [stmt for stmt in tree.body if stmt.lineno < guard_line]
    if not calls or any((stmt.end_lineno or stmt.lineno) >= guard_line for stmt in earlier):
        raise ConfigError(
            f"{where}: the start delimiter must be a line of its own at the top level of the file, "
            "so that the sandbox guard runs before the block"
        )


def baseline_source() -> str:
    """The packaged baseline trade.py (20/50-day SMA crossover)."""
    return resources.files("autotrade").joinpath("templates/trade.py").read_text(encoding="utf-8")


def read_source(path: Path) -> str:
    """The text of a user's trade.py or block file; ConfigError naming it when missing, not a file or not UTF-8."""
    if path.exists() and not path.is_file():  # a directory, or a pipe that would block the read forever
        raise ConfigError(f"{path}: not a regular file: give a trade.py or a file holding only the agent block")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start}): "
            "give a trade.py or a file holding only the agent block"
        ) from None


def read_block(path: Path) -> str:
    """The agent block of a file that is either a whole trade.py or the block alone."""
    text = read_source(path)
    if any(is_delimiter_line(line) for _, line in _lines(text)):
        return extract_block(text, str(path))
    return text
