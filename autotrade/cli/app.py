"""The `autotrade` command line: parse, call one function, render.

Heavy modules (pandas, openai, yfinance, matplotlib) are imported inside the commands that need them,
so `autotrade --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from autotrade.cli import export as cli_export
from autotrade.cli import report as cli_report
from autotrade.cli import research as cli_research
from autotrade.cli.options import CostOpt, DataDirOpt, EvalTimeoutOpt, FillChoice, FillOpt
from autotrade.data.windows import HELD_OUT_WINDOWS, RESEARCH_WINDOWS, Window
from autotrade.errors import AutotradeError

if TYPE_CHECKING:
    from autotrade.evaluation.evaluate import Evaluation

console = Console()
err_console = Console(stderr=True)


def print_error(message: str) -> None:
    """One plain line on stderr; never parsed as Rich markup (messages quote code and brackets)."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


class _Group(TyperGroup):
    """Turns the tool's expected errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AutotradeError as exc:
            if ctx.params.get("debug"):
                raise
            print_error(str(exc))
            raise typer.Exit(code=1) from None


app = typer.Typer(
    name="autotrade",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals can hold the API key
    help="A language model keeps rewriting a trading strategy; a trusted harness backtests every attempt honestly.",
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
) -> None:
    """autotrade: prepare data, backtest a strategy, let a model improve it."""


@app.command()
def prepare(
    ticker: Annotated[
        str | None,
        typer.Option(
            help=(
                "Ticker to download (default SPY), or several separated by commas; with --offline bundled sets: "
                "sp500, nasdaq, goog, eurusd, btcusd."
            )
        ),
    ] = None,
    start: Annotated[
        str, typer.Option(help="First date to download (YYYY-MM-DD); bundled and CSV data are used whole.")
    ] = "2000-01-01",
    end: Annotated[str | None, typer.Option(help="Last date to download (default: today).")] = None,
    csv: Annotated[
        list[Path] | None,
        typer.Option("--csv", help="Import this OHLCV CSV instead of downloading; repeat it for a set of assets."),
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Use the bundled real data; no network.")] = False,
    val_start: Annotated[str | None, typer.Option(help="First date of the validation window.")] = None,
    test_start: Annotated[str | None, typer.Option(help="First date of the held-out test window.")] = None,
    no_fallback: Annotated[
        bool,
        typer.Option("--no-fallback", help="Fail instead of falling back to bundled data when the download fails."),
    ] = False,
    data_dir: DataDirOpt = Path("data"),
    holdout_asset: Annotated[
        str | None,
        typer.Option(
            "--holdout-asset",
            help="With several tickers: keep this asset out of research entirely; only `autotrade report` shows it.",
        ),
    ] = None,
) -> None:
    """Get daily OHLCV data and split it into train / validation / test.

    Several comma-separated tickers (--ticker sp500,nasdaq) prepare one set: every candidate is evaluated on each.
    """
    from autotrade.data.prepared import prepare_data

    prepared = prepare_data(
        ticker=ticker,
        start=start,
        end=end,
        csv=csv,
        offline=offline,
        val_start=val_start,
        test_start=test_start,
        no_fallback=no_fallback,
        data_dir=data_dir,
        notify=lambda line: err_console.print(Text(line, style="yellow"), soft_wrap=True),
        holdout_asset=holdout_asset,
    )
    assets = [*prepared.assets, *([prepared.held_out] if prepared.held_out is not None else [])]
    table = Table(title=prepared.meta["description"])
    for column in ("asset", "window", "first", "last", "bars")[0 if len(assets) > 1 else 1 :]:
        table.add_column(column, justify="right" if column == "bars" else "left")
    for asset in assets:
        label = [f"{asset.name} (held out)" if asset is prepared.held_out else asset.name] if len(assets) > 1 else []
        for name, window in asset.meta["windows"].items():
            table.add_row(*label, name, window["first_date"], window["last_date"], str(window["rows"]))
    console.print(table)
    console.print(f"data written to {data_dir}/ (the test window is held out until `autotrade report`)")


@app.command()
def backtest(
    path: Annotated[
        Path | None,
        typer.Argument(help="A trade.py, or a file holding only the agent block (default: the bundled baseline)."),
    ] = None,
    fill: FillOpt = FillChoice.NEXT_OPEN,
    cost_bps: CostOpt = 2.0,
    window: Annotated[
        list[Window] | None,
        typer.Option("--window", help="Window to evaluate; repeat for several (default: train and val)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")] = False,
    data_dir: DataDirOpt = Path("data"),
    eval_timeout: EvalTimeoutOpt = 60.0,
) -> None:
    """Backtest a strategy file on the prepared data, beside buy-and-hold."""
    from autotrade.sandbox.pool import SandboxPool

    with SandboxPool() as pool:
        pool.start()  # first: the server imports pandas while this process imports the rest and loads the data
        from autotrade.candidate import baseline_source, extract_block, read_block
        from autotrade.engine.backtest import BacktestSettings, Fill
        from autotrade.evaluation.evaluate import backtest_block

        windows = tuple(dict.fromkeys(w.value for w in (window or RESEARCH_WINDOWS)))
        if any(w in HELD_OUT_WINDOWS for w in windows):
            err_console.print(
                "note: this looks at the held-out test window; every look spends some of its honesty.", style="yellow"
            )
        block = read_block(path) if path else extract_block(baseline_source())
        settings = BacktestSettings(fill=Fill(fill.value), cost_bps=cost_bps)
        evaluation = backtest_block(block, data_dir, windows, settings, eval_timeout, pool)
    if as_json:
        record = evaluation.to_record()
        record["settings"] = {"fill": fill.value, "cost_bps": cost_bps, "data": str(data_dir)}
        console.print_json(json.dumps(record, allow_nan=False))
    else:
        _render_evaluation(evaluation, str(path or "baseline trade.py"))
    if not evaluation.ok:
        print_error(f"{evaluation.status}: {evaluation.message}")
        raise typer.Exit(code=1)


_ROWS = (
    ("total_return", "total return", "{:+.2%}"),
    ("cagr", "CAGR", "{:+.2%}"),
    ("sharpe", "Sharpe", "{:.3f}"),
    ("sortino", "Sortino", "{:.3f}"),
    ("max_drawdown", "max drawdown", "{:.2%}"),
    ("calmar", "Calmar", "{:.3f}"),
    ("num_trades", "trades", "{:.0f}"),
    ("win_rate", "win rate", "{:.1%}"),
    ("exposure", "exposure", "{:.1%}"),
    ("turnover", "turnover", "{:.2f}"),
    ("total_costs", "costs", "{:,.2f}"),
    ("final_equity", "final equity", "{:,.2f}"),
)


def _render_evaluation(evaluation: Evaluation, title: str) -> None:
    """A table of each window's metrics, buy-and-hold beside it: one per part (asset) of a set, then their aggregate."""
    views = evaluation.part_views()
    if evaluation.parts:
        views.append((f"{evaluation.across} of {len(evaluation.parts)} assets", evaluation))
    for label, view in views:
        _window_table(view.windows, f"{title} · {label}" if label else title)


def _window_table(windows: Mapping[str, Mapping[str, float]], title: str) -> None:
    if not windows:
        return
    table = Table(title=title)
    table.add_column("metric")
    for name in windows:
        table.add_column(name, justify="right")
        table.add_column(f"{name} B&H", justify="right", style="dim")
    buy_and_hold = {"total_return": "buy_and_hold_return", "sharpe": "buy_and_hold_sharpe"}
    for key, label, fmt in _ROWS:
        cells = []
        for metrics in windows.values():
            cells.append(fmt.format(metrics[key]))
            bh_key = buy_and_hold.get(key)
            cells.append(fmt.format(metrics[bh_key]) if bh_key else "")
        table.add_row(label, *cells)
    console.print(table)


app.command("run")(cli_research.run)
app.command("resume")(cli_research.resume)
app.command("doctor")(cli_research.doctor)
app.command("report")(cli_report.report)
app.command("runs")(cli_report.runs)
app.command("compare")(cli_report.compare)
app.command("export")(cli_export.export)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
