"""`autotrade report`, `runs` and `compare`: read runs, compute, render.

Plain functions with typer annotations; cli.py registers them. `report` is the only command that
evaluates strategies on the held-out test window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autotrade.cli.common import RUNS_ROOT, note_on_stderr
from autotrade.errors import ConfigError


def report(
    name: Annotated[str | None, typer.Argument(help="Run name (default: the latest run in train/).")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Prepared data directory (default: the one the run recorded; its sha256 must match)."
        ),
    ] = None,
    holdout: Annotated[
        bool,
        typer.Option(
            "--holdout/--no-holdout", help="Evaluate the population on the held-out test window (recorded in the run)."
        ),
    ] = True,
    reveal_running: Annotated[
        bool,
        typer.Option(
            "--reveal-running",
            help="Evaluate the held-out test window even while the run is still running "
            "(its population may still change).",
        ),
    ] = False,
    max_trials: Annotated[
        int,
        typer.Option("--max-trials", min=4, help="At most this many ok trials re-evaluated for PBO and correlations."),
    ] = 200,
) -> None:
    """Report a run: leaderboard, held-out test beside buy-and-hold, overfitting statistics, failures, diversity,
    spend; writes report.html and PNG plots into the run."""
    from autotrade.report.compute import build_report
    from autotrade.report.render import print_report, write_files
    from autotrade.research.rundir import RunDir

    console = Console()
    run = RunDir.open(RUNS_ROOT, name, notify=note_on_stderr)
    with console.status(f"evaluating run {run.name}…"):
        built = build_report(
            run, data_dir=data_dir, holdout=holdout, max_trials=max_trials, reveal_running=reveal_running
        )
        files = write_files(built)
    print_report(built, console, files)


def runs() -> None:
    """List every run in train/: model, endpoint, iterations, ok share, best validation, test once revealed, state."""
    from autotrade.report.compute import summarize_run
    from autotrade.report.render import runs_table
    from autotrade.research.rundir import list_runs

    console = Console()
    found = list_runs(RUNS_ROOT)
    if not found:
        console.print(f"no runs in {RUNS_ROOT}/: start one with `autotrade run`")
        return
    console.print(runs_table([summarize_run(r) for r in found], f"runs in {RUNS_ROOT}/"))


def compare(
    names: Annotated[list[str], typer.Argument(help="Two or more run names.")],
    iterations: Annotated[
        int | None,
        typer.Option(
            "--iterations", min=1, metavar="N", help="Cut every run at its first N iterations (baseline included)."
        ),
    ] = None,
    tokens: Annotated[
        int | None,
        typer.Option(
            "--tokens", min=1, metavar="N", help="Cut every run at the iterations it completed within N tokens."
        ),
    ] = None,
    minutes: Annotated[
        float | None,
        typer.Option(
            "--minutes",
            metavar="M",
            help="Cut every run at the iterations it completed within M minutes of research time.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data", help="Prepared data directory (default: each run's own; its sha256 must match)."),
    ] = None,
) -> None:
    """Compare runs side by side, whole and on equal footing (the same iterations, tokens or minutes): the best
    within the cut and its DSR and PBO, parse failures, repair rate, thinking, tokens per ok strategy."""
    from autotrade.report.compare import Footing, compare_runs, rule_differences, settings_of
    from autotrade.report.compute import summarize_run
    from autotrade.report.render import compare_table, footing_table
    from autotrade.research.rundir import RunDir

    footing = Footing(iterations=iterations, tokens=tokens, minutes=minutes)
    if len(set(names)) < 2:
        raise ConfigError("compare needs at least two different run names (see `autotrade runs`)")
    runs = [RunDir.open(RUNS_ROOT, n) for n in dict.fromkeys(names)]
    rows = [summarize_run(run) for run in runs]
    console = Console()
    console.print(compare_table(rows))
    with console.status("re-evaluating the ok trials within the cut…"):
        legs = compare_runs(runs, footing, data_dir=data_dir)
    console.print(footing_table(legs, footing))
    datasets = {r.data_sha256 for r in rows if r.data_sha256}
    if len(datasets) > 1:
        console.print(
            "note: these runs used different data, so their returns are not directly comparable",
            style="yellow",
            markup=False,
        )
    differ = rule_differences({run.name: settings for run in runs if (settings := settings_of(run)) is not None})
    if differ:
        console.print(
            f"note: these runs were evaluated under different rules ({'; '.join(differ)}), so their figures are "
            "not on equal footing",
            style="yellow",
            markup=False,
        )
    for r in rows:
        if r.problem:
            console.print(
                f"note: run {r.name} could not be read: {r.problem}", style="yellow", markup=False
            )  # errors quote files
    for leg in legs:
        if leg.problem and not any(r.problem and r.name == leg.name for r in rows):
            console.print(f"note: run {leg.name}: {leg.problem}", style="yellow", markup=False)
        if leg.notes:
            console.print(f"{leg.name}: {' '.join(leg.notes)}", style="dim", markup=False)
