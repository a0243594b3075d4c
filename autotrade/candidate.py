"""A candidate is the agent block of a trade.py: the text between the two delimiter lines."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import ConfigError

# The original harness's markers, so its users' files keep working.
BLOCK_START = "# --- THESE ARE THE FUNCTIONS THE AGENT SHOULD MODIFY ---"
BLOCK_END = "# -----------------------------------------------------------"


def _block_bounds(source: str, where: str) -> tuple[int, int]:
    """Character offsets of the block: just after the start line, up to the end line."""
    start = source.find(BLOCK_START)
    if start < 0:
        raise ConfigError(f"{where}: no start delimiter line '{BLOCK_START}'")
    body = source.find("\n", start)
    if body < 0:
        raise ConfigError(f"{where}: nothing follows the start delimiter")
    body += 1
    end = source.find(BLOCK_END, body)
    if end < 0:
        raise ConfigError(f"{where}: no end delimiter line '{BLOCK_END}' after the start delimiter")
    return body, end


def has_delimiters(source: str) -> bool:
    """True when the text holds both delimiter lines in order."""
    start = source.find(BLOCK_START)
    return start >= 0 and source.find(BLOCK_END, start + len(BLOCK_START)) >= 0


def extract_block(source: str, where: str = "trade.py") -> str:
    """The agent block of a trade.py text, exactly as written."""
    body, end = _block_bounds(source, where)
    return source[body:end]


def splice_block(source: str, block: str, where: str = "trade.py") -> str:
    """Replace the agent block; every byte outside it stays as it was."""
    body, end = _block_bounds(source, where)
    if block and not block.endswith("\n"):
        block += "\n"
    return source[:body] + block + source[end:]


def baseline_source() -> str:
    """The packaged baseline trade.py (20/50-day SMA crossover)."""
    return resources.files("autotrade").joinpath("templates/trade.py").read_text(encoding="utf-8")


def read_block(path: Path) -> str:
    """The agent block of a file that is either a whole trade.py or the block alone."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    if BLOCK_START in text or BLOCK_END in text:
        return extract_block(text, str(path))
    return text
