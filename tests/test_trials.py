"""The Deflated Sharpe Ratio's N: every distinct strategy whose code ran, on hand-made records."""

from __future__ import annotations

from autotrade.report.trials import TrialCount, count_trials
from autotrade.research.attempt import Attempt
from autotrade.status import Status

SMA = "def generate_features(df):\n    df['f'] = df['Close'].rolling({n}).mean()\n    return df\n"


def attempt(i: int, status: Status, block: str | None) -> Attempt:
    return Attempt(iteration=i, status=status, block=block)


def count(*attempts: Attempt) -> TrialCount:
    return count_trials(attempts, {})


def test_failures_that_ran_count_beside_the_ok_ones() -> None:
    found = count(
        attempt(0, Status.OK, SMA.format(n=10)),
        attempt(1, Status.RUNTIME_ERROR, SMA.format(n=11)),
        attempt(2, Status.LOOKAHEAD, SMA.format(n=12)),
        attempt(3, Status.NO_TRADES, SMA.format(n=13)),
        attempt(4, Status.TIMEOUT, SMA.format(n=14)),
    )
    assert found == TrialCount(ran=5, ok=1)
    assert found.how == "N = 5 distinct strategies that ran, of which 1 ok"


def test_blocks_that_never_ran_add_nothing() -> None:
    found = count(
        attempt(0, Status.OK, SMA.format(n=10)),
        attempt(1, Status.PARSE_ERROR, None),
        attempt(2, Status.SYNTAX_ERROR, "def generate_features(df)\n    return df\n"),
        attempt(3, Status.REJECTED, "import os\n"),
        attempt(4, Status.TRUNCATED, None),
    )
    assert found == TrialCount(ran=1, ok=1)


def test_a_twin_is_one_trial_but_a_new_parameter_is_another() -> None:
    relaid = (
        "# the same again\ndef generate_features(df):\n    df['f'] = df['Close'].rolling(10).mean()  # 10\n\n"
        "    return df\n"
    )
    found = count(
        attempt(0, Status.OK, SMA.format(n=10)),
        attempt(1, Status.OK, relaid),  # comments and layout only
        attempt(2, Status.RUNTIME_ERROR, SMA.format(n=20)),
        attempt(3, Status.RUNTIME_ERROR, SMA.format(n=20)),  # evaluated twice, one program
        attempt(4, Status.OK, SMA.format(n=30)),
    )
    assert found == TrialCount(ran=3, ok=2)


def test_the_block_of_an_old_record_comes_from_its_trade_file() -> None:
    found = count_trials([attempt(0, Status.OK, None)], {0: SMA.format(n=10)})
    assert found == TrialCount(ran=1, ok=1)


def test_the_statuses_that_ran_are_those_whose_code_met_the_data() -> None:
    # A status added later (a twin reused without running) runs nothing unless it says so.
    assert {s for s in Status if s.ran} == {
        Status.OK,
        Status.RUNTIME_ERROR,
        Status.TIMEOUT,
        Status.MEMORY,
        Status.BAD_SIGNAL,
        Status.LOOKAHEAD,
        Status.NO_TRADES,
        Status.NAN_EQUITY,
    }
