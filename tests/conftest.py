"""Shared fixtures: real bundled data, prepared offline into a temporary directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from llama_server import llama_server  # noqa: F401  (the real llama.cpp server fixture)
from openai_server import openai_server  # noqa: F401  (the loopback OpenAI server fixture)

from autotrade.sandbox.pool import SandboxPool


@pytest.fixture(scope="session")
def sp500() -> pd.DataFrame:
    """The bundled S&P 500 daily frame, 1999-01-04 to 2018-12-31."""
    from autotrade.data.sources import load_bundled

    return load_bundled("sp500")


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory prepared offline from the bundled S&P 500 with the default splits."""
    from autotrade.data.prepared import prepare_data

    data_dir = tmp_path_factory.mktemp("data")
    prepare_data(offline=True, data_dir=data_dir)
    return data_dir


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bundled S&P 500 cut to 2014-2018 (train 2014-2016, validation 2017, test 2018): quick to evaluate."""
    from autotrade.data.prepared import prepare_data
    from autotrade.data.sources import load_bundled

    folder = tmp_path_factory.mktemp("small")
    frame = load_bundled("sp500")
    frame[frame.index >= "2014-01-01"].to_csv(folder / "spx.csv")
    prepare_data(csv=folder / "spx.csv", data_dir=folder / "data", val_start="2017-01-01", test_start="2018-01-01")
    return folder / "data"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bundled S&P 500 from 2017-07 (train to 2017-12, validation 2018-H1, test 2018-H2): for runs whose
    iterations matter, not their strategies, a quarter of small_data's bars to gate and evaluate."""
    from autotrade.data.prepared import prepare_data
    from autotrade.data.sources import load_bundled

    folder = tmp_path_factory.mktemp("tiny")
    frame = load_bundled("sp500")
    frame[(frame.index >= "2017-07-01") & (frame.index < "2019-01-01")].to_csv(folder / "spx.csv")
    prepare_data(csv=folder / "spx.csv", data_dir=folder / "data", val_start="2018-01-01", test_start="2018-07-01")
    return folder / "data"


@pytest.fixture(scope="session")
def sandbox_pool() -> Iterator[SandboxPool]:
    """One sandbox pool for the tests that evaluate directly, as one command shares one (a pool per call would
    start a fork server each time)."""
    with SandboxPool() as pool:
        yield pool


def synthetic_ohlcv(rows: int, seed: int, start: str) -> pd.DataFrame:
    """A random-walk daily OHLCV frame, for tests where the sandbox, not the market, is under test."""
    index = pd.bdate_range(start, periods=rows, name="Date")
    close = 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.012, rows)))
    return pd.DataFrame(
        {
            "Open": close,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Adj Close": close,
            "Volume": np.full(rows, 1e6),
        },
        index=index,
    )


def working_copy(lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a fresh copy of `lab`'s train/ (module-scoped runs stay pristine)."""
    shutil.copytree(lab / "train", tmp_path / "train")
    monkeypatch.chdir(tmp_path)
    return tmp_path
