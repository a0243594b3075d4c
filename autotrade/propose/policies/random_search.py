"""random: undirected search, a random combination of causal indicators per proposal, needing no endpoint.

It answers the question every user should ask: does my model beat undirected search at the same number of
evaluations? Proposals draw only from ``request.rng`` (see ``base``), never from the parent or past results.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autotrade.propose.policies.base import Proposal, ProposalRequest

if TYPE_CHECKING:
    from autotrade.propose.client import EndpointWait, ModelSettings

RANDOM_MODEL = "random"  # what config.json and the results record as the model of a random-policy run


class RandomProposer:
    """Undirected search: a random strategy per proposal, independent of the parent and of past results."""

    def propose(self, request: ProposalRequest) -> Proposal:
        """A random strategy written as a model would reply; no tokens."""
        started = time.perf_counter()
        text = random_strategy(request.rng).reply()
        return Proposal(text=text, finish_reason="stop", model=RANDOM_MODEL, latency_s=time.perf_counter() - started)

    def close(self) -> None:
        """Nothing is ever in flight."""


@dataclass(frozen=True)
class RandomPolicy:
    """Proposals that never build on the population, so no failure streak stops the run (--max-fails)."""

    name: str = RANDOM_MODEL
    needs_endpoint: bool = False
    builds_on_population: bool = False
    phase: str = "proposing"

    def proposer(
        self,
        model: ModelSettings | None,
        on_wait: Callable[[EndpointWait], None] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> RandomProposer:
        """A random proposer; it needs no endpoint settings."""
        return RandomProposer()


POLICY = RandomPolicy()


# -- random strategies ---------------------------------------------------------------------------------------
# Every rule below is causal by construction: rolling windows and ewm end at the current bar, lags are positive,
# and breakout levels are shifted by one bar so today's high cannot be its own breakout level.


@dataclass(frozen=True)
class Rule:
    """One indicator rule: the feature lines it needs and its entry and exit conditions over ``row``."""

    title: str
    features: tuple[str, ...]  # statements inside generate_features, each setting one column
    enter: str  # a boolean expression: go long
    exit: str | None = None  # a boolean expression: go flat (filters have none)
    helpers: tuple[str, ...] = ()  # names of HELPERS the features call


RSI_HELPER = '''def wilder_rsi(close, n):
    """Wilder's RSI (0-100): average gain over average loss, smoothed with alpha = 1/n."""
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    loss = (-delta).clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    return 100 - 100 / (1 + gain / loss)
'''
HELPERS = {"wilder_rsi": RSI_HELPER}


def _number(x: float) -> str:
    """A short literal for generated code."""
    return f"{x:g}"


def _moving_average(rng: random.Random, n: int) -> tuple[str, str]:
    """A simple or exponential moving average of the close: (column, feature line)."""
    if rng.random() < 0.5:
        return f"sma_{n}", f'df["sma_{n}"] = df["Close"].rolling({n}).mean()'
    return f"ema_{n}", f'df["ema_{n}"] = df["Close"].ewm(span={n}, adjust=False, min_periods={n}).mean()'


def ma_crossover(rng: random.Random) -> Rule:
    """Long while a fast moving average is above a slow one."""
    fast = rng.randint(3, 50)
    slow = rng.randint(max(2 * fast, 20), 250)
    fast_col, fast_line = _moving_average(rng, fast)
    slow_col, slow_line = _moving_average(rng, slow)
    return Rule(
        title=f"{fast_col.split('_')[0].upper()} {fast} / {slow_col.split('_')[0].upper()} {slow} crossover",
        features=(fast_line, slow_line),
        enter=f'row["{fast_col}"] > row["{slow_col}"]',
        exit=f'row["{fast_col}"] < row["{slow_col}"]',
    )


def price_vs_average(rng: random.Random) -> Rule:
    """Long while the close is above a moving average by a band, flat below it by the band."""
    n = rng.randint(20, 250)
    band = rng.choice([0.0, 0.005, 0.01, 0.02])
    col, line = _moving_average(rng, n)
    return Rule(
        title=f"close vs {col.split('_')[0].upper()} {n} (band {band:.1%})",
        features=(line,),
        enter=f'row["Close"] > row["{col}"] * {_number(1 + band)}',
        exit=f'row["Close"] < row["{col}"] * {_number(1 - band)}',
    )


def momentum(rng: random.Random) -> Rule:
    """Long while the n-bar rate of change is above a threshold, flat below another."""
    n = rng.randint(5, 252)
    enter = round(rng.uniform(0.0, 0.05), 3)
    leave = round(-rng.uniform(0.0, 0.05), 3)
    return Rule(
        title=f"{n}-bar momentum (in above {enter:.1%}, out below {leave:.1%})",
        features=(f'df["roc_{n}"] = df["Close"].pct_change({n})',),
        enter=f'row["roc_{n}"] > {_number(enter)}',
        exit=f'row["roc_{n}"] < {_number(leave)}',
    )


def _rsi_line(n: int) -> str:
    return f'df["rsi_{n}"] = wilder_rsi(df["Close"], {n})'


def rsi_reversion(rng: random.Random) -> Rule:
    """Wilder RSI reversion: buy oversold, sell overbought."""
    n = rng.randint(2, 21)
    low, high = rng.randint(20, 40), rng.randint(55, 80)
    return Rule(
        title=f"RSI {n} reversion (buy below {low}, sell above {high})",
        features=(_rsi_line(n),),
        enter=f'row["rsi_{n}"] < {low}',
        exit=f'row["rsi_{n}"] > {high}',
        helpers=("wilder_rsi",),
    )


def rsi_trend(rng: random.Random) -> Rule:
    """Wilder RSI as a trend signal: buy strength, sell weakness."""
    n = rng.randint(5, 30)
    up, down = rng.randint(50, 65), rng.randint(35, 50)
    return Rule(
        title=f"RSI {n} trend (buy above {up}, sell below {down})",
        features=(_rsi_line(n),),
        enter=f'row["rsi_{n}"] > {up}',
        exit=f'row["rsi_{n}"] < {down}',
        helpers=("wilder_rsi",),
    )


def breakout(rng: random.Random) -> Rule:
    """Donchian breakout: buy above the prior n-bar high, sell below the prior m-bar low."""
    n = rng.randint(10, 120)
    m = rng.randint(5, n)
    return Rule(
        title=f"breakout above the prior {n}-bar high, exit below the prior {m}-bar low",
        features=(
            f'df["high_{n}"] = df["High"].rolling({n}).max().shift(1)',
            f'df["low_{m}"] = df["Low"].rolling({m}).min().shift(1)',
        ),
        enter=f'row["Close"] > row["high_{n}"]',
        exit=f'row["Close"] < row["low_{m}"]',
    )


def zscore_reversion(rng: random.Random) -> Rule:
    """Bollinger-style reversion: buy k standard deviations below the n-bar mean, sell back above a level."""
    n = rng.randint(10, 60)
    k_in = rng.choice([1.0, 1.5, 2.0, 2.5])
    k_out = rng.choice([0.0, 0.5, 1.0])
    return Rule(
        title=f"{n}-bar z-score reversion (buy below -{k_in:g}, sell above {k_out:g})",
        features=(f'df["z_{n}"] = (df["Close"] - df["Close"].rolling({n}).mean()) / df["Close"].rolling({n}).std()',),
        enter=f'row["z_{n}"] < {_number(-k_in)}',
        exit=f'row["z_{n}"] > {_number(k_out)}',
    )


def volatility_filter(rng: random.Random) -> Rule:
    """Enter only while recent volatility (rolling std of returns) is below a multiple of its longer average."""
    n = rng.randint(10, 60)
    ref = rng.randint(100, 250)
    factor = rng.choice([0.8, 1.0, 1.2, 1.5])
    return Rule(
        title=f"calm filter ({n}-bar volatility below {factor:g} x its {ref}-bar average)",
        features=(
            f'df["vol_{n}"] = df["Close"].pct_change().rolling({n}).std()',
            f'df["vol_{n}_avg_{ref}"] = df["vol_{n}"].rolling({ref}).mean()',
        ),
        enter=f'row["vol_{n}"] < row["vol_{n}_avg_{ref}"] * {_number(factor)}',
    )


def trend_filter(rng: random.Random) -> Rule:
    """Enter only above a long simple moving average."""
    n = rng.randint(100, 250)
    return Rule(
        title=f"trend filter (close above SMA {n})",
        features=(f'df["sma_{n}"] = df["Close"].rolling({n}).mean()',),
        enter=f'row["Close"] > row["sma_{n}"]',
    )


def volume_filter(rng: random.Random) -> Rule:
    """Enter only on volume above a multiple of its n-bar average."""
    n = rng.randint(10, 50)
    factor = rng.choice([0.8, 1.0, 1.2])
    return Rule(
        title=f"volume filter (volume above {factor:g} x its {n}-bar average)",
        features=(f'df["volume_avg_{n}"] = df["Volume"].rolling({n}).mean()',),
        enter=f'row["Volume"] > row["volume_avg_{n}"] * {_number(factor)}',
    )


# Entry signals by family: two signals are combined only within a family (a breakout AND a dip would never both hold).
TREND_SIGNALS: tuple[Callable[[random.Random], Rule], ...] = (
    ma_crossover,
    price_vs_average,
    momentum,
    breakout,
    rsi_trend,
)
REVERSION_SIGNALS: tuple[Callable[[random.Random], Rule], ...] = (rsi_reversion, zscore_reversion)
FILTERS: tuple[Callable[[random.Random], Rule], ...] = (volatility_filter, trend_filter, volume_filter)


@dataclass(frozen=True)
class RandomStrategy:
    """A random strategy: its agent block and a one-line title."""

    block: str
    title: str

    def reply(self) -> str:
        """The strategy as a model would reply: a python block and a markdown hypothesis."""
        return (
            f"```python\n{self.block}```\n\n"
            f"```markdown\nRandom policy: {self.title}\n\n"
            "Undirected baseline: indicators and parameters drawn at random from the run's seeded generator, "
            "not chosen from earlier results.\n```\n"
        )


def _condition(parts: list[str], op: str) -> str:
    """Conditions joined by ``op``: on one line when short, else one per line inside parentheses."""
    line = f" {op} ".join(parts)
    if len(line) <= 80:
        return line
    return "(\n        " + f"\n        {op} ".join(parts) + "\n    )"


def random_strategy(rng: random.Random) -> RandomStrategy:
    """One or two entry signals of one family (all must agree to buy, any exit sells) and up to two entry filters."""
    family = TREND_SIGNALS if rng.random() < 0.7 else REVERSION_SIGNALS
    signals = [make(rng) for make in rng.sample(family, 1 if rng.random() < 0.6 else 2)]
    filters = [make(rng) for make in rng.sample(FILTERS, rng.choices((0, 1, 2), weights=(4, 4, 2))[0])]
    rules = signals + filters
    helpers = dict.fromkeys(name for rule in rules for name in rule.helpers)
    features = dict.fromkeys(line for rule in rules for line in rule.features)  # shared columns once, in order
    enter = _condition([rule.enter for rule in rules], "and")
    leave = _condition([rule.exit for rule in signals if rule.exit], "or")
    title = " + ".join(rule.title for rule in rules)
    block = "".join(f"{HELPERS[name]}\n\n" for name in helpers)
    block += (
        "def generate_features(df):\n"
        f'    """Random policy: {title}."""\n' + "".join(f"    {line}\n" for line in features) + "    return df\n\n\n"
        "def strategy_logic(row):\n"
        '    """Sell on any exit signal; buy when every entry condition holds (NaN compares False: hold)."""\n'
        f"    if {leave}:\n"
        "        return -1\n"
        f"    if {enter}:\n"
        "        return 1\n"
        "    return 0\n"
    )
    return RandomStrategy(block=block, title=title)
