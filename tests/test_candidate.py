"""The agent block: found between the original harness's delimiters, replaced byte-exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotrade.candidate import BLOCK_END, BLOCK_START, baseline_source, extract_block, read_block, splice_block
from autotrade.errors import ConfigError

NEW_BLOCK = "def generate_features(df):\n    return df\n\n\ndef strategy_logic(row):\n    return 0\n"


def test_splice_changes_only_the_text_between_the_delimiters() -> None:
    source = baseline_source()
    spliced = splice_block(source, NEW_BLOCK)
    head, tail = source.split(BLOCK_START + "\n")[0], source.split(BLOCK_END)[1]
    assert spliced.startswith(head + BLOCK_START + "\n" + NEW_BLOCK + BLOCK_END)
    assert spliced.endswith(BLOCK_END + tail)
    assert extract_block(spliced) == NEW_BLOCK


def test_splicing_the_extracted_block_gives_back_the_same_file() -> None:
    source = baseline_source()
    assert splice_block(source, extract_block(source)) == source


def test_file_without_the_end_delimiter_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no end delimiter line"):
        extract_block(BLOCK_START + "\ndef f():\n    pass\n", "mine.py")


def test_a_file_holding_only_the_block_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "block.py"
    path.write_text(NEW_BLOCK)
    assert read_block(path) == NEW_BLOCK


def test_missing_strategy_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_block(tmp_path / "absent.py")
