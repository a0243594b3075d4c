"""autotrade: a language model rewrites a trading strategy; a trusted harness backtests it honestly."""

__version__ = "0.2.0"
