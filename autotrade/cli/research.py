"""`autotrade run`, `resume` and `doctor`: parse flags, call the loop, render its progress.

Plain functions with typer annotations; cli.py registers them. The API key comes from the
environment or `.env` only: a flag would leave it in shell history and in `ps` output.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from autotrade.cli.common import RUNS_ROOT, note_on_stderr
from autotrade.cli.options import (
    BudgetMinutesOpt,
    BudgetTokensOpt,
    CostOpt,
    DataDirOpt,
    EvalTimeoutOpt,
    FillChoice,
    FillOpt,
    ObjectiveOpt,
    PolicyOpt,
    ReplyFormatChoice,
    ReplyFormatOpt,
)
from autotrade.data.windows import MAX_FOLDS
from autotrade.evaluation.objectives import DEFAULT_OBJECTIVE, DEFAULT_ROBUST_K, format_score, has_own_column
from autotrade.fmt import hms, pct
from autotrade.propose.policies import DEFAULT_POLICY, POLICIES
from autotrade.research import budget
from autotrade.research.config import MAX_PARALLEL, MAX_REPAIR

if TYPE_CHECKING:
    from autotrade.propose.client import EndpointWait
    from autotrade.research.attempt import Attempt
    from autotrade.research.config import RunSettings
    from autotrade.research.loop import RunResult, Standing
    from autotrade.research.rundir import RunDir

EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C
DEFAULT_MAX_FAILS = 5  # the original harness's stop rule
DOCTOR_TRIES = 5  # doctor answers in seconds: a few tries, not a run's endpoint patience
WAIT_LINE_EVERY_S = 30.0  # off a live display, one line per this many seconds of a long wait for the endpoint


PATIENCE_HELP = (
    "How long to keep retrying a model server that is down or failing (connection refused, HTTP 5xx or 429, a "
    "body that is no reply) before the run stops, resumably: seconds or a duration like 90s, 30m, 1h (default: "
    "$OPENAI_PATIENCE, else 30m). Client errors (400, 401, 403, 404) stop at once."
)


def who_proposes(settings: RunSettings, model: Mapping[str, Any]) -> str:
    """'model M at URL', or 'random policy (no model)' for a policy without an endpoint."""
    if not POLICIES.get(settings.policy).needs_endpoint:
        return f"{settings.policy} policy (no model)"
    return f"model {model.get('model')} at {model.get('base_url')}"


def budgets(settings: RunSettings) -> dict[str, str]:
    """The run's budgets that are set, by setting name: tokens whole, minutes as given."""
    given = {budget.TOKENS: settings.budget_tokens, budget.MINUTES: settings.budget_minutes}
    return {key: f"{value:g}" if isinstance(value, float) else str(value) for key, value in given.items() if value}


# -- rendering -------------------------------------------------------------------------------------


def score_text(objective: str, value: float | None) -> str:
    """An objective value as the objective formats it."""
    return format_score(objective, value)


def duration(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    return hms(int(seconds))


def why_failed(attempt: Attempt) -> str:
    """One short line on why an iteration failed (empty for ok)."""
    if attempt.ok:
        return ""
    message = " ".join(attempt.message.split())
    return message if len(message) <= 140 else message[:139] + "…"


def iteration_line(attempt: Attempt, standing: Standing, objective: str) -> str:
    """The one greppable line printed per iteration."""
    parts = [
        f"iter {attempt.iteration}/{standing.max_iter - 1}",
        f"status={attempt.status}",
        f"parent={'-' if attempt.parent is None else attempt.parent}",
        *([f"repairs={len(attempt.repair_turns)}"] if attempt.repair_turns else []),
        f"train_return={pct(attempt.train_return)}",
        f"val_return={pct(attempt.val_return)}",
        *([f"{objective}={score_text(objective, attempt.objective)}"] if has_own_column(objective) else []),
        "entered" if attempt.entered_population else f"fails={standing.fail_streak}/{standing.max_fails}",
        f"best={score_text(objective, standing.best_score)}"
        + ("" if standing.best_iteration is None else f"@{standing.best_iteration}"),
        f"tokens={standing.tokens}",
        f"elapsed={duration(standing.elapsed_s)}",
    ]
    reason = why_failed(attempt)
    warning = "; ".join(attempt.suspicious)
    return " ".join(parts) + (f" why={reason}" if reason else "") + (f" SUSPICIOUS={warning}" if warning else "")


def wait_line(wait: EndpointWait) -> str:
    """One plain line for a wait before retrying the endpoint."""
    from autotrade.durations import format_duration

    return (
        f"endpoint: {wait.problem} (try {wait.tries}); next try in {format_duration(wait.retry_in_s)}, "
        f"giving up in {duration(wait.patience_left_s)}"
    )


class WaitLines:
    """Which waits get a line of their own: the first of an outage, a new problem, then one per WAIT_LINE_EVERY_S."""

    def __init__(self) -> None:
        self.last: tuple[str, float] | None = None  # (problem, time.monotonic()) of the last line

    def due(self, wait: EndpointWait) -> bool:
        """True when this wait should be printed (and remember it)."""
        now = time.monotonic()
        if self.last is not None and self.last[0] == wait.problem and now - self.last[1] < WAIT_LINE_EVERY_S:
            return False
        self.last = (wait.problem, now)
        return True

    def reset(self) -> None:
        """The endpoint answered: the next outage starts with a line."""
        self.last = None


class WaitColumn(ProgressColumn):
    """While the endpoint is retried: seconds to the next try and to giving up, counting down in place."""

    def render(self, task: Task) -> Text:
        """Empty unless the task's `wait` field holds (next try at, gives up at) in time.monotonic() seconds."""
        wait = task.fields.get("wait")
        if wait is None:
            return Text("")
        now = time.monotonic()
        retry_at, give_up_at = wait
        return Text(
            f"next try in {max(0.0, retry_at - now):.0f} s · gives up in {duration(max(0.0, give_up_at - now))}",
            style="yellow",
        )


def final_table(result: RunResult) -> Table:
    """The population beside buy-and-hold: train and validation figures only."""
    show_score = has_own_column(result.objective)
    table = Table(title=f"{result.name}: top {len(result.population)} by {result.objective}")
    headers = [
        "rank",
        "iter",
        *([result.objective] if show_score else []),
        "train return",
        "val return",
        "val Sharpe",
        "val max DD",
        "val trades",
    ]
    for header in headers:
        table.add_column(header, justify="right")
    for rank, attempt in enumerate(result.population, start=1):
        val = attempt.windows.get("val", {})
        table.add_row(
            str(rank),
            str(attempt.iteration),
            *([score_text(result.objective, attempt.objective)] if show_score else []),
            pct(attempt.train_return),
            pct(attempt.val_return),
            "—" if val.get("sharpe") is None else f"{val['sharpe']:.2f}",
            "—" if val.get("max_drawdown") is None else f"{val['max_drawdown']:.1%}",
            "—" if val.get("num_trades") is None else f"{val['num_trades']:.0f}",
        )
    if result.population:
        windows = result.population[0].windows
        train, val = windows.get("train", {}), windows.get("val", {})
        bh_sharpe = val.get("buy_and_hold_sharpe")
        table.add_row(
            "B&H",
            "",
            *([""] if show_score else []),
            pct(train.get("buy_and_hold_return")),
            pct(val.get("buy_and_hold_return")),
            "—" if bh_sharpe is None else f"{bh_sharpe:.2f}",
            "",
            "",
            style="dim",
        )
    return table


def ending_lines(result: RunResult) -> list[str]:
    """What to tell the user when the loop stops."""
    if result.already_finished:
        return [
            f"run {result.name} already finished ({result.stop_reason}, {result.iterations} iterations): nothing to do"
        ]
    if result.status == "finished":
        why = {"max_iter": "reached --max-iter", "max_fails": "reached --max-fails"}.get(
            str(result.stop_reason),
            result.message,  # a budget: which one, what it spent, how to extend it
        )
        best = (
            f"best in {result.path}/best_trade.py"
            if result.population
            else "no iteration entered the population, so there is no best strategy"
        )
        line = f"run {result.name} finished: {why} after {result.iterations} iterations; {best}"
        if result.stop_reason in (budget.TOKENS, budget.MINUTES):
            flag = "--" + str(result.stop_reason).replace("_", "-")
            line += f"; to go on: `autotrade resume {result.name} {flag} N` with a larger N"
        return [line]
    return []


class PlainReporter:
    """--quiet: plain log lines, one per event, flushed (fit for files and pipes)."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.objective = DEFAULT_OBJECTIVE
        self.wait_lines = WaitLines()

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def begin(self, run: RunDir, settings: RunSettings, model: Mapping[str, Any], standing: Standing) -> None:
        """Announce the run."""
        self.objective = settings.objective
        self._print(
            f"run={run.name} dir={run.path} policy={settings.policy} model={model.get('model')} "
            f"base_url={model.get('base_url')} "
            f"objective={settings.objective} max_iter={settings.max_iter} max_fails={settings.max_fails} "
            f"population={settings.population} seed={settings.seed} next_iteration={standing.done}"
            + "".join(f" {key}={value}" for key, value in budgets(settings).items())
        )

    def phase(self, iteration: int, text: str) -> None:
        """Phases are not logged in plain mode (one line per iteration)."""

    def iteration(self, attempt: Attempt, standing: Standing) -> None:
        """One line per iteration."""
        self.wait_lines.reset()
        self._print(iteration_line(attempt, standing, self.objective))

    def note(self, line: str) -> None:
        """An informational line."""
        self._print(line)

    def waiting(self, wait: EndpointWait) -> None:
        """A line when an outage starts or its problem changes, then one per WAIT_LINE_EVERY_S."""
        if self.wait_lines.due(wait):
            self._print(wait_line(wait))

    def end(self, result: RunResult) -> None:
        """The population as plain lines, then the ending."""
        for rank, attempt in enumerate(result.population, start=1):
            score = score_text(result.objective, attempt.objective)
            self._print(
                f"top{rank} iter={attempt.iteration} {result.objective}={score} "
                f"train_return={pct(attempt.train_return)} val_return={pct(attempt.val_return)}"
            )
        if result.population:
            windows = result.population[0].windows
            self._print(
                f"buy_and_hold train_return={pct(windows.get('train', {}).get('buy_and_hold_return'))} "
                f"val_return={pct(windows.get('val', {}).get('buy_and_hold_return'))}"
            )
        for line in ending_lines(result):
            self._print(line)


class RichReporter:
    """A live progress bar (iteration i/N, best so far, failure streak, tokens, elapsed) above per-iteration lines."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress: Progress | None = None
        self.task: Any = None
        self.objective = DEFAULT_OBJECTIVE
        self.current = "starting"  # the phase shown, which a wait for the endpoint extends
        self.wait_lines = WaitLines()  # before the live display starts (preflight), waits are lines

    def begin(self, run: RunDir, settings: RunSettings, model: Mapping[str, Any], standing: Standing) -> None:
        """Print the run's header and start the progress display."""
        self.objective = settings.objective
        self.console.print(
            Text.assemble(
                ("run ", "bold"), (run.name, "bold cyan"), f" in {run.path}  ·  {who_proposes(settings, model)}"
            )
        )
        self.console.print(
            f"objective {settings.objective} · max-iter {settings.max_iter} · max-fails {settings.max_fails} · "
            f"population {settings.population} · seed {settings.seed} · fill {settings.fill} · cost "
            f"{settings.cost_bps:g} bp"
            + "".join(f" · {key.replace('_', '-')} {value}" for key, value in budgets(settings).items()),
            style="dim",
        )
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            WaitColumn(),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            self.current, total=settings.max_iter, completed=standing.done, stats=self._stats(standing), wait=None
        )

    def _stats(self, standing: Standing) -> str:
        best = score_text(self.objective, standing.best_score)
        where = "" if standing.best_iteration is None else f" (iter {standing.best_iteration})"
        return (
            f"best {best}{where} · fails {standing.fail_streak}/{standing.max_fails} · "
            f"{standing.tokens:,} tokens · total {duration(standing.elapsed_s)}"
        )

    def phase(self, iteration: int, text: str) -> None:
        """Show what the current iteration is doing."""
        self.current = f"iter {iteration}: {text}"
        if self.progress is not None:
            self.progress.update(self.task, description=self.current, wait=None)

    def iteration(self, attempt: Attempt, standing: Standing) -> None:
        """Print the iteration's line and advance the bar."""
        status = attempt.status.value
        line = Text.assemble(
            (f"iter {attempt.iteration:>3} ", "bold"),
            (f"{status:<13}", "green" if attempt.ok else "red"),
            f" train {pct(attempt.train_return):>9}  val {pct(attempt.val_return):>9}",
        )
        if attempt.entered_population:
            line.append("  ↑ population", style="green")
        elif status == "ok":
            line.append("  not in the top", style="yellow")
        reason = why_failed(attempt)
        if reason:
            line.append(f"  {reason}", style="dim")
        self.console.print(line, soft_wrap=True)
        if self.progress is not None:
            self.progress.update(self.task, completed=standing.done, stats=self._stats(standing))

    def note(self, line: str) -> None:
        """An informational line above the bar."""
        self.console.print(Text(line, style="yellow"), soft_wrap=True)

    def waiting(self, wait: EndpointWait) -> None:
        """The bar's line names the problem and counts down to the next try and to giving up; lines before it starts."""
        if self.progress is None:
            if self.wait_lines.due(wait):
                self.note(wait_line(wait))
            return
        now = time.monotonic()
        self.progress.update(
            self.task,
            description=f"{self.current} · endpoint: {wait.problem} (try {wait.tries})",
            wait=(now + wait.retry_in_s, now + wait.patience_left_s),
        )

    def end(self, result: RunResult) -> None:
        """Stop the bar; print the population beside buy-and-hold."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if result.population:
            self.console.print(final_table(result))
        for line in ending_lines(result):
            self.console.print(line)


def make_reporter(quiet: bool) -> PlainReporter | RichReporter:
    """Plain lines with --quiet (or off a terminal's progress needs), else the rich display."""
    return PlainReporter() if quiet else RichReporter()


def _stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C, so `kill` also stops at a clean point."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def finish(result: RunResult) -> None:
    """Exit as the result says: 0 finished, 130 interrupted, 1 endpoint error (with the resume hint on stderr)."""
    err = Console(stderr=True)
    if result.status == "finished":
        return
    hint = f"continue with: autotrade resume {result.name}"
    if result.stop_reason == "interrupted":
        err.print(Text(f"interrupted after {result.iterations} committed iterations; {hint}"), soft_wrap=True)
        raise typer.Exit(code=EXIT_INTERRUPTED)
    err.print(Text.assemble(("error: ", "bold red"), result.message), soft_wrap=True)
    err.print(Text(f"the run is saved; {hint}"), soft_wrap=True)
    raise typer.Exit(code=1)


# -- commands --------------------------------------------------------------------------------------


def run(
    max_iter: Annotated[
        int, typer.Option("--max-iter", min=1, help="Evaluated iterations, the baseline (iteration 0) included.")
    ] = 50,
    max_fails: Annotated[
        int | None,
        typer.Option(
            "--max-fails",
            min=1,
            help=(
                "Stop after this many iterations in a row that do not enter the population (default 5; none with "
                "--policy random, whose proposals never build on the population)."
            ),
        ),
    ] = None,
    population: Annotated[int, typer.Option("--population", min=1, help="How many best iterations to keep.")] = 3,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help=(
                "Run name (default: <ticker>-<YYYYmmdd-HHMMSS>, with -2, -3… when another run took it); the run "
                "lives in train/<name>/."
            ),
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed of the random reversion and the random policy (default: random, recorded)."),
    ] = None,
    start_from: Annotated[
        Path | None, typer.Option("--from", help="Start from this trade.py (or a file holding only the agent block).")
    ] = None,
    objective: ObjectiveOpt = DEFAULT_OBJECTIVE,
    robust_k: Annotated[
        int, typer.Option("--robust-k", min=1, help="Sub-windows of train + validation for --objective robust.")
    ] = DEFAULT_ROBUST_K,
    policy: PolicyOpt = DEFAULT_POLICY,
    learnings_budget: Annotated[
        int, typer.Option("--learnings-budget", min=0, help="Characters of learnings in each prompt.")
    ] = 6000,
    quiet: Annotated[bool, typer.Option("--quiet", help="Plain log lines instead of the live display.")] = False,
    anonymize: Annotated[
        bool,
        typer.Option(
            "--anonymize",
            help=(
                "Hide the instrument and calendar from the model: dates shifted by whole weeks, prices rescaled (the "
                "report shows the real dates)."
            ),
        ),
    ] = False,
    novelty: Annotated[
        bool,
        typer.Option(
            "--novelty/--no-novelty",
            help=(
                "Refuse duplicates (a failure): a proposal with an earlier ok attempt's structure (up to names, "
                "comments, line order and argument style) is not evaluated, its twin's result reused; one whose "
                "validation positions correlate 0.99 with a population member's is refused after evaluation."
            ),
        ),
    ] = True,
    data_dir: DataDirOpt = Path("data"),
    fill: FillOpt = FillChoice.NEXT_OPEN,
    cost_bps: CostOpt = 2.0,
    eval_timeout: EvalTimeoutOpt = 60.0,
    base_url: Annotated[
        list[str] | None,
        typer.Option(
            "--base-url",
            help=(
                "OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else http://localhost:8000/v1). Repeat it, or "
                "separate URLs by commas, for replicas of one model: requests spread over them."
            ),
        ),
    ] = None,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel",
            min=1,
            max=MAX_PARALLEL,
            help=(
                "Proposals in flight at once, each evaluated as it arrives and committed in order (match the "
                "server's concurrency: vLLM batches requests, llama-server -np N, OLLAMA_NUM_PARALLEL=N)."
            ),
        ),
    ] = 1,
    repair: Annotated[
        int,
        typer.Option(
            "--repair",
            min=0,
            max=MAX_REPAIR,
            help=(
                "Turns a reply gets to fix itself when it fails to parse, fails vetting or raises on its first run: "
                "the exact error goes back in the same conversation before the iteration counts as failed "
                "(0: none; the random policy is never repaired)."
            ),
        ),
    ] = 1,
    collapse_window: Annotated[
        int,
        typer.Option(
            "--collapse-window",
            min=0,
            help=(
                "When this many ok attempts in a row use the same indicator families, the next prompt says the "
                "search has collapsed and asks for another family (0: never)."
            ),
        ),
    ] = 5,
    model: Annotated[
        str | None, typer.Option("--model", help="Model name (default: $OPENAI_MODEL, else the server's only model).")
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            min=0.0,
            max=2.0,
            help="Sampling temperature (default: $OPENAI_TEMPERATURE, else the server's).",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", min=1, help="Reply token limit (default: $OPENAI_MAX_TOKENS, else the server's)."),
    ] = None,
    endpoint_patience: Annotated[
        str | None, typer.Option("--endpoint-patience", metavar="DURATION", help=PATIENCE_HELP)
    ] = None,
    reply_format: ReplyFormatOpt = ReplyFormatChoice.TEXT,
    folds: Annotated[
        int,
        typer.Option(
            "--folds",
            min=1,
            max=MAX_FOLDS,
            help=(
                "Walk-forward: cut the research period (train + validation) into K consecutive folds, each a train "
                "span and a validation span, and score the worst (or mean, --across) fold; 1: the prepared split. "
                "The held-out test window is never folded."
            ),
        ),
    ] = 1,
    window_mode: Annotated[
        str,
        typer.Option("--window-mode", help="Each fold's train span: expanding (every earlier bar) or rolling."),
    ] = "expanding",
    across: Annotated[
        str,
        typer.Option(
            "--across",
            help="How assets (prepare --ticker a,b) and folds aggregate into the objective: worst or mean.",
        ),
    ] = "worst",
    budget_tokens: BudgetTokensOpt = None,
    budget_minutes: BudgetMinutesOpt = None,
) -> None:
    """Let the model (or --policy random) rewrite the strategy, evaluating every attempt.

    The API key comes from OPENAI_API_KEY (the environment or .env).
    """
    from autotrade.errors import ConfigError
    from autotrade.propose.prompts import load_prompt_files
    from autotrade.research.config import RunSettings, load_env_file, model_settings
    from autotrade.research.loop import start_run

    load_env_file()
    chosen = POLICIES.get(policy)
    settings = RunSettings(
        max_iter=max_iter,
        # Proposals that never build on the population cannot stall it: no failure streak stops them by default.
        max_fails=max_fails
        if max_fails is not None
        else (DEFAULT_MAX_FAILS if chosen.builds_on_population else max_iter),
        population=population,
        seed=seed if seed is not None else secrets.randbelow(2**31),
        objective=objective,
        robust_k=robust_k,
        policy=policy,
        learnings_budget=learnings_budget,
        fill=fill.value,
        cost_bps=cost_bps,
        eval_timeout=eval_timeout,
        data_dir=str(data_dir.resolve()),
        start_from=str(start_from.resolve()) if start_from else None,
        anonymize=anonymize,
        parallel=parallel,
        reply_format=reply_format.value,
        repair=repair,
        folds=folds,
        window_mode=window_mode,
        across=across,
        novelty=novelty,
        budget_tokens=budget_tokens,
        budget_minutes=budget_minutes,
        collapse_window=collapse_window,
    )
    if not chosen.needs_endpoint:
        given = [
            flag
            for flag, value in (
                ("--base-url", base_url),
                ("--model", model),
                ("--temperature", temperature),
                ("--max-tokens", max_tokens),
                ("--endpoint-patience", endpoint_patience),
            )
            if value is not None
        ]
        if given:
            raise ConfigError(f"{', '.join(given)}: endpoint settings apply to --policy model only")
        endpoint = None
    else:
        endpoint = model_settings(
            base_url=",".join(base_url) if base_url else None,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            patience=endpoint_patience,
        )
    _stop_on_sigterm()
    result = start_run(settings, endpoint, make_reporter(quiet), prompts=load_prompt_files(), name=name, root=RUNS_ROOT)
    finish(result)


def resume(
    name: Annotated[str | None, typer.Argument(help="Run to continue (default: the latest run in train/).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Plain log lines instead of the live display.")] = False,
    base_url: Annotated[
        list[str] | None,
        typer.Option(
            "--base-url", help="The endpoint moved: use this URL (repeat it for several) instead of the recorded one."
        ),
    ] = None,
    endpoint_patience: Annotated[
        str | None, typer.Option("--endpoint-patience", metavar="DURATION", help=PATIENCE_HELP)
    ] = None,
    max_iter: Annotated[
        int | None,
        typer.Option(
            "--max-iter", min=1, help="Raise the run's --max-iter, so that a run which reached it goes on (recorded)."
        ),
    ] = None,
    budget_tokens: BudgetTokensOpt = None,
    budget_minutes: BudgetMinutesOpt = None,
) -> None:
    """Continue a stopped or killed run exactly where it left off (settings, model and data are the run's own)."""
    from autotrade.research.config import check_base_url, load_env_file, model_settings
    from autotrade.research.loop import resume_run
    from autotrade.research.rundir import RunDir

    load_env_file()
    run_dir = RunDir.open(RUNS_ROOT, name, notify=note_on_stderr)
    config = run_dir.read_config()
    reporter = make_reporter(quiet)
    api_key, timeout_s, patience_s = "", None, None  # a random-policy run has no endpoint
    policy = config.get("policy", DEFAULT_POLICY)  # a hand-edited unknown one fails on the settings check, one line
    if policy in POLICIES.entries and POLICIES.get(policy).needs_endpoint:
        # The key, timeout and patience; the run's recorded model and URL win over the environment.
        env = model_settings(patience=endpoint_patience)
        api_key, timeout_s = env.api_key, env.timeout_s if os.environ.get("OPENAI_TIMEOUT") else None
        patience_s = env.patience_s
        recorded = config.get("model", {}).get("model")
        if os.environ.get("OPENAI_MODEL") and recorded and os.environ["OPENAI_MODEL"] != recorded:
            reporter.note(f"note: resuming with the run's model {recorded!r}; OPENAI_MODEL is ignored on resume")
    _stop_on_sigterm()
    result = resume_run(
        run_dir,
        reporter,
        api_key=api_key,
        base_url=check_base_url(",".join(base_url)) if base_url else None,
        timeout_s=timeout_s,
        patience_s=patience_s,
        max_iter=max_iter,
        budget_tokens=budget_tokens,
        budget_minutes=budget_minutes,
    )
    finish(result)


def doctor(
    base_url: Annotated[
        list[str] | None,
        typer.Option("--base-url", help="Endpoint to check; repeat it for several (default: $OPENAI_BASE_URL)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model to check (default: $OPENAI_MODEL).")] = None,
    data_dir: DataDirOpt = Path("data"),
    reply_format: ReplyFormatOpt = ReplyFormatChoice.TEXT,
) -> None:
    """Check the endpoint (models, a test completion with its speed, with --reply-format json whether the server
    constrains replies to the JSON schema), the sandbox layers and the prepared data."""
    from dataclasses import replace

    from autotrade.errors import AutotradeError
    from autotrade.propose.client import ModelClient, display_url, endpoint_urls, json_probe, preflight
    from autotrade.research.config import load_env_file, model_settings

    console = Console()
    load_env_file()
    joined = ",".join(base_url) if base_url else None
    settings = replace(model_settings(base_url=joined, model=model), max_retries=DOCTOR_TRIES)
    problems = 0

    def line(ok: bool | None, label: str, detail: str) -> None:
        mark = {True: ("ok  ", "green"), False: ("FAIL", "bold red"), None: ("warn", "yellow")}[ok]
        console.print(Text.assemble((mark[0], mark[1]), f"  {label}: ", detail), soft_wrap=True)

    key = "set" if os.environ.get("OPENAI_API_KEY") else "not set (a dummy key is sent; fine for local servers)"
    for url in endpoint_urls(settings.base_url):  # each replica of several: a run skips one that does not answer
        one = replace(settings, base_url=url)
        line(True, "endpoint", f"{display_url(url)} · API key {key}")
        try:
            report = preflight(one, 2000)
        except AutotradeError as exc:
            problems += 1
            line(False, "preflight", str(exc))
            continue
        for info in report.models:
            context = f"context {info.context_length:,}" if info.context_length else "context size not reported"
            line(True, "model" + (" (selected)" if info.id == report.model else ""), f"{info.id} · {context}")
        for warning in report.warnings:
            line(None, "preflight", warning)
        probe = replace(one, model=report.model, max_tokens=min(one.max_tokens or 512, 512), max_retries=2)
        try:
            started = time.monotonic()
            reply = ModelClient(probe).complete([{"role": "user", "content": "Reply with the single word: ready"}])
            wall = time.monotonic() - started
        except AutotradeError as exc:
            problems += 1
            line(False, "test completion", str(exc))
            continue
        speed = reply.completion_tokens / reply.latency_s if reply.latency_s > 0 else 0.0
        estimated = " (estimated)" if reply.usage_estimated else ""
        said = " ".join(reply.content.split())[:60] or "(empty content)"
        usable = reply.finish_reason != "length" and bool(reply.content.strip())
        line(
            True if usable else None,
            "test completion",
            f"{reply.latency_s:.2f} s ({wall:.2f} s with retries) · {reply.prompt_tokens} + "
            f"{reply.completion_tokens} "
            f"tokens{estimated} · {speed:.1f} tokens/s · finish {reply.finish_reason} · said {said!r}"
            + (f" · {len(reply.reasoning)} characters of reasoning" if reply.reasoning else ""),
        )
        if reply_format is ReplyFormatChoice.JSON:
            held, detail = json_probe(ModelClient(replace(probe, reply_format=reply_format.value)))
            if held is False:  # a cut probe (None) may only need more tokens: a warning
                problems += 1
            line(held, "reply format json", detail)
    from autotrade.sandbox.pool import SandboxPool

    pool = SandboxPool()  # one fork server for both sandbox checks; every failure below is caught and reported
    try:
        layers = pool.probe_layers()
    except Exception as exc:  # noqa: BLE001 - doctor reports, it does not crash
        problems += 1
        line(False, "sandbox", f"cannot inspect the layers ({type(exc).__name__}: {exc})")
    else:
        # A layer is on when it says True; otherwise its value is False or the reason it is off.
        on = [name for name, state in layers.items() if state is True]
        off = [name if state is False else f"{name} ({state})" for name, state in layers.items() if state is not True]
        line(
            True if not off else None,
            "sandbox",
            f"active: {', '.join(on) or 'none'}" + (f" · inactive: {', '.join(off)}" if off else ""),
        )
    try:
        from autotrade.evaluation.evaluate import check_sandbox

        seconds = check_sandbox(pool)
    except Exception as exc:  # noqa: BLE001 - doctor reports, it does not crash
        problems += 1
        line(False, "sandbox evaluation", f"the baseline strategy could not be evaluated in the sandbox ({exc})")
    else:
        line(True, "sandbox evaluation", f"the baseline strategy ran in isolated workers ({seconds * 1000:.0f} ms)")
    pool.close()
    try:
        from autotrade.data.prepared import load_prepared

        data = load_prepared(data_dir)
    except AutotradeError as exc:
        problems += 1
        line(False, "data", str(exc))
    else:
        meta = data.meta
        line(
            True,
            "data",
            f"{data_dir}: {meta.get('dataset') or meta.get('ticker')} · {len(data.frame):,} bars "
            f"{data.frame.index[0]:%Y-%m-%d} to {data.frame.index[-1]:%Y-%m-%d} · validation from "
            f"{data.splits.val_start:%Y-%m-%d} · test (held out) from {data.splits.test_start:%Y-%m-%d}",
        )
    if problems:
        raise typer.Exit(code=1)
