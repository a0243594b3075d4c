"""The `autotrade` console script.

A one-shot command (`autotrade backtest`) forks its evaluating helper before the CLI's own heavy
imports, so pandas loads beside typer and rich instead of after them (see sandbox/oneshot.py).
Importing autotrade.cli.app itself starts nothing.
"""

import sys


def main() -> None:
    """Entry point of the console script."""
    from autotrade.sandbox import oneshot

    oneshot.start_for_command(sys.argv)
    from autotrade.cli.app import main as cli_main

    cli_main()
