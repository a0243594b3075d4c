"""The research loop: ask the proposer, parse, vet, splice, evaluate, select, remember — and resume exactly.

The proposer is the model at the endpoint (``--policy model``) or undirected random search (``--policy random``);
both reply in text, so every proposal takes the same parse → vet → splice → evaluate path.

A reply that fails to parse, fails vetting or raises on its first run (a status `repairable`) gets its exact
error back in the same conversation, up to --repair more turns; only the last turn's outcome is the iteration's,
and every turn is recorded (its reply in iter_<i>_repair_<k>.md). A repair turn cut off by a stop drops its
iteration whole: resume redoes it from its first turn.

One iteration: on a thread of its own, proposal → parse → evaluation (nothing written); then, on the
main thread and in iteration order: reply and candidate written → results record → learnings.md and
best_trade.py re-rendered from the committed records plus this one → state.json (the commit point) →
journal. With --parallel K, K iterations are in flight at once and iteration i is asked from the state
committed after iteration i - K, so what a run proposes never depends on how fast replies come. Anything
an interrupted iteration left behind is removed when the run continues, and that iteration is redone once.
"""

from __future__ import annotations

import math
import queue
import random
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from autotrade import __version__
from autotrade.candidate import (
    baseline_source,
    extract_block,
    has_delimiters,
    is_guarded,
    read_block,
    read_source,
    runnable_source,
    splice_block,
)
from autotrade.data.plan import EvalPlan, Folds
from autotrade.data.prepared import PreparedData, load_prepared
from autotrade.data.windows import RESEARCH_WINDOWS
from autotrade.engine.metrics import periods_per_year
from autotrade.errors import (
    CandidateError,
    ConfigError,
    EndpointError,
    ReplyError,
    SandboxError,
    StorageError,
    UnsafeCodeError,
)
from autotrade.evaluation.evaluate import Evaluation, evaluate_block, finish_gate
from autotrade.evaluation.families import block_families, family_name
from autotrade.evaluation.novelty import block_structure, encode_positions, validation_positions
from autotrade.evaluation.objectives import DEFAULT_ROBUST_K, OBJECTIVES, format_score
from autotrade.evaluation.score import score_evaluation
from autotrade.propose.client import (
    EndpointWait,
    ModelClient,
    ModelSettings,
    PreflightReport,
    display_url,
    endpoint_urls,
    preflight,
)
from autotrade.propose.policies import POLICIES, Proposal, ProposalRequest, Proposer
from autotrade.propose.prompts import (
    PromptContext,
    PromptFiles,
    build_prompt,
    collapse_section,
    describe_columns,
    describe_failure,
    describe_outcome,
    describe_population,
    engine_rules,
    messages,
    sample_rows,
)
from autotrade.propose.reply import ParsedReply, parse_reply, strip_reasoning
from autotrade.propose.reply_format import with_reply_format
from autotrade.research import budget
from autotrade.research.attempt import Attempt, Turn
from autotrade.research.collapse import Collapse, collapse_of
from autotrade.research.config import RunSettings, public_model_config
from autotrade.research.learnings import Lesson, for_prompt, render_file
from autotrade.research.population import Population, choose_parent, record_outcome, rng_from_state, rng_state
from autotrade.research.rundir import (
    RunDir,
    RunState,
    RunStatus,
    anonymization,
    check_name,
    data_identity,
    default_name,
    eval_settings,
    evaluation_rules,
    now_iso,
)
from autotrade.research.twins import judge, structure_message, structure_twins
from autotrade.sandbox.pool import SandboxPool
from autotrade.sandbox.vet import vet_block
from autotrade.status import Status


class StopReason(StrEnum):
    """Why a run stopped (state.json's `stop_reason`)."""

    MAX_ITER = "max_iter"  # N iterations evaluated
    MAX_FAILS = "max_fails"  # the failure streak reached --max-fails
    BUDGET_TOKENS = budget.TOKENS  # the committed iterations spent --budget-tokens
    BUDGET_MINUTES = budget.MINUTES  # the run's research time reached --budget-minutes
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    ENDPOINT = "endpoint_error"  # the model server failed after retries
    SANDBOX = "sandbox_error"  # the sandbox could not run a worker on this machine (no candidate to blame)
    STORAGE = "storage_error"  # a file of the run could not be written (disk full, read-only)


@dataclass(frozen=True)
class Standing:
    """Progress figures shown after each iteration."""

    done: int  # iterations committed
    max_iter: int
    best_iteration: int | None
    best_score: float | None
    fail_streak: int
    max_fails: int
    tokens: int
    elapsed_s: float


@dataclass(frozen=True)
class RunResult:
    """How a run (or this session of it) ended."""

    name: str
    path: Path
    status: str  # finished or stopped
    stop_reason: str | None
    message: str  # why, in one line (the endpoint's error for endpoint_error)
    iterations: int  # committed iterations
    population: list[Attempt]  # the members, best first
    objective: str
    already_finished: bool = False  # resume found nothing to do


@dataclass(frozen=True)
class Exchange:
    """One model turn of an iteration in flight: the proposal, how its reply read, and the failure it answered."""

    proposal: Proposal
    reply: ParsedReply | ReplyError
    prompt_chars: int  # the whole conversation sent
    error_status: str | None = None  # a repair turn: the status of the failure sent back before it
    error: str | None = None  # a repair turn: that failure as the model read it


@dataclass(eq=False)
class Flight:
    """One iteration in flight: what it was asked from, and what its thread found (read once `done` is set).

    Its outcome is its last exchange's: the reply, and the evaluation when that reply held code."""

    iteration: int
    parent: int | None  # None: the baseline, evaluated without a proposal
    prompt: str
    rng: random.Random
    started_at: str
    nudged: bool = False  # its prompt said the search had collapsed (research.collapse)
    missed_phase: str | None = None  # a phase it entered while an older iteration was the one shown
    landed: bool = False  # the main thread has seen its thread finish
    exchanges: list[Exchange] = field(default_factory=list)  # the model turns, oldest first; none for the baseline
    evaluation: Evaluation | None = None
    eval_s: float = 0.0  # over every turn's evaluation
    twins: Mapping[str, int] = field(default_factory=dict)  # ok structures committed up to its basis (--novelty)
    twin: int | None = None  # its last turn repeated this iteration's structure: not evaluated, its result reused
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)


class Reporter(Protocol):
    """Where the loop's progress goes; the loop never prints."""

    def begin(self, run: RunDir, settings: RunSettings, model: Mapping[str, Any], standing: Standing) -> None:
        """The run is about to iterate."""

    def phase(self, iteration: int, text: str) -> None:
        """The current iteration entered a phase ('asking the model', 'evaluating')."""

    def iteration(self, attempt: Attempt, standing: Standing) -> None:
        """One iteration committed."""

    def note(self, line: str) -> None:
        """An informational line."""

    def waiting(self, wait: EndpointWait) -> None:
        """The endpoint failed in a way that may heal; the client retries in wait.retry_in_s seconds."""

    def end(self, result: RunResult) -> None:
        """The loop stopped (finished, interrupted or endpoint error)."""


def window_return(windows: Mapping[str, Mapping[str, float | None]], window: str) -> float | None:
    """A window's total return from JSON-safe window metrics, or None."""
    value = windows.get(window, {}).get("total_return")
    return None if value is None else float(value)


def score(objective: str, evaluation: Evaluation, frame_index: Any, robust_k: int = DEFAULT_ROBUST_K) -> float | None:
    """The objective's value for an ok evaluation (score.score_evaluation's total); None when not ok or not finite."""
    if not evaluation.ok:
        return None
    value = score_evaluation(evaluation, objective, robust_k=robust_k, periods=periods_per_year(frame_index)).total
    return value if math.isfinite(value) else None


def render_proposal(
    prompts: PromptFiles,
    settings: RunSettings,
    research_frame: Any,
    attempts: list[Attempt],
    members: list[Attempt],
    iteration: int,
    parent: int,
    parent_block: str,
    assets: Sequence[str] = (),
    collapse: Collapse | None = None,
) -> str:
    """The prompt of one proposal from the committed attempts (never test-window data); `assets`: a set's names; a
    `collapse` of the search adds the section that asks for another structure family."""
    objective = settings.objective
    context = PromptContext(
        iteration=str(iteration),
        last_iteration=str(settings.max_iter - 1),
        objective=objective,
        objective_description=OBJECTIVES.get(objective).describe(settings.robust_k)
        + describe_plan(settings, assets, research_frame.index),
        columns=describe_columns(research_frame),
        sample_rows=sample_rows(research_frame),
        engine_rules=engine_rules(settings.fill, settings.cost_bps),
        parent_iteration=str(parent),
        parent_code=parent_block.strip("\n"),
        population=describe_population(
            members, objective, lambda value: format_score(objective, value, "n/a"), settings.across
        ),
        last_outcome=describe_outcome(attempts[-1] if attempts else None, settings.across),
        learnings=for_prompt([Lesson.from_attempt(a) for a in attempts], settings.learnings_budget) or "(none yet)",
    )
    prompt = build_prompt(prompts, context)
    if collapse is not None:
        prompt += "\n" + collapse_section(family_name(collapse.families), collapse.window, collapse.others)
    return with_reply_format(prompt, settings.reply_format)


def describe_plan(settings: RunSettings, assets: Sequence[str], research_index: Any) -> str:
    """What a multi-part evaluation adds to the objective's sentence: the assets, the folds and their dates."""
    if len(assets) < 2 and settings.folds < 2:
        return ""
    pieces = []
    if len(assets) > 1:
        pieces.append(f"on each of {len(assets)} assets ({', '.join(assets)})")
    if settings.folds > 1:
        folds = Folds(settings.folds, settings.window_mode)
        pieces.append(
            f"on {settings.folds} walk-forward folds of the research period ({settings.window_mode} train spans: "
            + "; ".join(folds.describe(research_index))
            + ")"
        )
    count = max(1, len(assets)) * settings.folds
    rule = "the worst" if settings.across == "worst" else "the mean"
    return f". Every strategy is scored {' and '.join(pieces)}: the objective is {rule} of these {count} parts' values"


def estimate_prompt_chars(
    prompts: PromptFiles, settings: RunSettings, research_frame: Any, start_block: str, assets: Sequence[str] = ()
) -> int:
    """A generous size in characters for a proposal prompt once learnings and population fill up."""
    chars = len(render_proposal(prompts, settings, research_frame, [], [], 1, 0, start_block, assets))
    # Learnings up to their budget; population lines, a failure's traceback and a longer parent add the rest,
    # and a multi-part evaluation a line per part for each member and the last outcome.
    parts = max(1, len(assets)) * settings.folds if len(assets) > 1 or settings.folds > 1 else 0
    return (
        chars + settings.learnings_budget + 2500 + 600 * settings.population + 135 * parts * (settings.population + 1)
    )


def check_endpoint(model: ModelSettings, prompt_chars: int, reporter: Reporter) -> ModelSettings:
    """Preflight each endpoint: it answers, the model exists, the prompt fits. Returns the settings this session uses:
    the model resolved, and of several endpoints those that answered (one line for each skipped).

    With several endpoints the run needs one model on all of them; the first endpoint's error when none answers."""
    urls = endpoint_urls(model.base_url)
    answered: list[tuple[str, PreflightReport]] = []
    failure: EndpointError | None = None
    for url in urls:
        one = replace(model, base_url=url)
        try:
            answered.append((url, preflight(one, prompt_chars, client=ModelClient(one, on_wait=reporter.waiting))))
        except EndpointError as exc:
            if len(urls) == 1:
                raise
            reporter.note(f"warning: endpoint {display_url(url)} skipped: {exc}")
            failure = failure or exc
    if not answered:
        assert failure is not None
        raise failure
    served = {report.model for _, report in answered}
    if len(served) > 1:
        raise ConfigError(
            f"the endpoints serve different models ({', '.join(sorted(served))}): a run asks one model; "
            "set OPENAI_MODEL (--model) to one they all serve"
        )
    for warning in dict.fromkeys(w for _, report in answered for w in report.warnings):
        reporter.note(f"warning: {warning}")
    return replace(model, base_url=",".join(url for url, _ in answered), model=answered[0][1].model)


class Research:
    """One process's session of a run: holds the committed state and advances it iteration by iteration."""

    def __init__(
        self,
        run: RunDir,
        config: Mapping[str, Any],
        model: ModelSettings | None,
        data: PreparedData,
        reporter: Reporter,
    ) -> None:
        self.run = run
        self.config = config
        self.settings = RunSettings.from_dict(config["settings"])
        self.model = model if model is None else replace(model, reply_format=self.settings.reply_format)
        self.reporter = reporter
        self.prompts = PromptFiles(
            program=config["prompts"]["program"],
            template=config["prompts"]["template"],
            program_source=f"{run.name}/config.json (program.md)",
            template_source=f"{run.name}/config.json (prompt_template.md)",
        )
        self.skeleton: str = config["start_source"]
        self.start_block = extract_block(self.skeleton, "the run's starting trade.py")
        self.proposer: Proposer | None = None  # made on the first proposal, once preflight has resolved the model
        self.state = state = run.committed_state()
        self.eval = eval_settings(self.settings, state)
        view = anonymization(self.settings, state, data)
        self.data = view.apply(data) if view is not None else data  # all the model and its candidates see
        self.research = self.data.research_frame()  # never the test rows
        self.records = run.records(state.next_iteration)
        self.rules = evaluation_rules(self.settings, config["data"])  # kept in each record; RunDir.check compares
        self.session_mark = time.monotonic()
        self.pool: SandboxPool | None = None  # the fork server of this session, from drive()

    # -- helpers -------------------------------------------------------------------------------
    @property
    def repair_turns(self) -> int:
        """Repair turns a failed reply gets (none for a policy that talks to no model: it cannot read an error)."""
        return self.settings.repair if POLICIES.get(self.settings.policy).needs_endpoint else 0

    @property
    def population(self) -> Population:
        """The committed population."""
        return Population.from_list(self.settings.population, self.state.population)

    def standing(self) -> Standing:
        """Figures for the progress display."""
        best = self.population.best
        totals = self.state.totals
        return Standing(
            done=self.state.next_iteration,
            max_iter=self.settings.max_iter,
            best_iteration=best.iteration if best else None,
            best_score=best.score if best else None,
            fail_streak=self.state.fail_streak,
            max_fails=self.settings.max_fails,
            tokens=budget.spent_tokens(totals),
            elapsed_s=totals.get("wall_s", 0.0) + time.monotonic() - self.session_mark,
        )

    def block_of(self, iteration: int) -> str:
        """The agent block a committed iteration evaluated (the start block for iteration 0 or none)."""
        block = self.records[iteration].block if iteration < len(self.records) else None
        return block or self.start_block

    def repair(self, redo_on: str | None = None, in_flight: Iterable[int] = ()) -> None:
        """Make the files agree with the committed state: drop an interrupted iteration's debris, and log
        the commit of an iteration whose process died between writing state.json and the journal.

        The dropped iterations (those with debris, and `in_flight`: this session's, cut off before they committed) run
        again now, or (when stopping) on `redo_on`, the command that resumes the run."""
        n = self.state.next_iteration
        removed = self.run.discard_uncommitted(n)
        if removed:
            self.run.journal("discarded_uncommitted", files=removed, next_iteration=n)
        dropped = sorted({i for i in in_flight if i >= n} | ({n} if removed else set()))
        if len(dropped) == 1:
            redo = f"it will be redone on {redo_on}" if redo_on else "redoing it"
            self.reporter.note(f"iteration {dropped[0]} was interrupted before it committed: {redo}")
        elif dropped:
            redo = f"they will be redone on {redo_on}" if redo_on else "redoing them"
            listed = ", ".join(map(str, dropped))
            self.reporter.note(f"iterations {listed} were interrupted before they committed: {redo}")
        logged = {e.get("iteration") for e in self.run.read_journal() if e.get("event") == "iteration_committed"}
        for attempt in self.records:
            if attempt.iteration not in logged:
                self.journal_commit(attempt, recovered=True)
        self.secure_legacy_files()
        self.write_derived(self.population)

    def journal_commit(self, attempt: Attempt, recovered: bool = False) -> None:
        """The journal's line for a committed iteration (`recovered` when written on resume)."""
        self.run.journal(
            "iteration_committed",
            iteration=attempt.iteration,
            status=attempt.status.value,
            objective=attempt.objective,
            entered=attempt.entered_population,
            fail_streak=attempt.fail_streak,
            # The run's research time at this commit (compare cuts runs at equal time with it); a line written on
            # resume comes after the fact and cannot say.
            **({"recovered": True} if recovered else {"wall_s": round(budget.research_s(self.state.totals), 3)}),
        )

    def write_derived(self, population: Population) -> None:
        """learnings.md, best_trade.py and trade.py, re-rendered from the attempts (idempotent)."""
        self.run.write_text(self.run.learnings_path, render_file(Lesson.from_attempt(a) for a in self.records))
        best = population.best
        if best is not None:
            self.write_py(self.run.best_path, self.block_of(best.iteration))
        for block in [*(a.block for a in reversed(self.records) if a.block), self.start_block]:
            if self.write_py(self.run.trade_path, block):  # the latest attempt that vets
                break

    def write_py(self, path: Path, block: str) -> bool:
        """Write `block` as a runnable, guarded trade.py at `path` if it vets; False (nothing written) if not.

        Only vetted blocks become .py files; the others stay text (the record, iter_<i>_rejected.txt).
        """
        try:
            vet_block(block)
            source = runnable_source(self.skeleton, block, f"{self.run.name}'s starting trade.py")
        except (UnsafeCodeError, CandidateError, ConfigError):
            return False
        self.run.write_text(path, source)
        return True

    def write_attempt(self, iteration: int, block: str) -> None:
        """iter_<i>_trade.py for a block that vets, iter_<i>_rejected.txt (never runnable) for one that does not."""
        if not self.write_py(self.run.iter_path(iteration, "trade.py"), block):
            self.run.write_text(self.run.iter_path(iteration, "rejected.txt"), block)

    def secure_legacy_files(self) -> None:
        """Rewrite iter_<i>_trade.py files an older version wrote without the sandbox guard (or for rejected blocks)."""
        for attempt in self.records:
            path = self.run.iter_path(attempt.iteration, "trade.py")
            block = attempt.block
            if not block or not path.is_file() or is_guarded(path.read_text(encoding="utf-8", errors="replace")):
                continue
            path.unlink()
            self.write_attempt(attempt.iteration, block)

    def commit(self, state: RunState) -> None:
        """Write state.json (the commit point), adding this session's wall time."""
        now = time.monotonic()
        totals = dict(state.totals)
        totals["wall_s"] = totals.get("wall_s", 0.0) + now - self.session_mark
        self.session_mark = now
        self.state = replace(state, totals=totals, updated_at=now_iso())
        self.run.write_state(self.state)

    def score_of(self, evaluation: Evaluation) -> float | None:
        """The run's objective for an evaluation (None unless ok)."""
        return score(self.settings.objective, evaluation, self.research.index, self.settings.robust_k)

    # -- one iteration -------------------------------------------------------------------------
    def basis(self, iteration: int) -> int:
        """The committed iteration a proposal for `iteration` is asked from: the one `parallel` before it (never
        before the baseline), so its parent and prompt do not depend on when the proposals in flight finish."""
        return max(0, iteration - self.settings.parallel)

    def launch(self, iteration: int, events: queue.SimpleQueue) -> Flight:
        """Start an iteration on its own thread: its parent and prompt from its basis, then propose and evaluate."""
        parent: int | None = None
        prompt = ""
        twins: dict[str, int] = {}
        collapse: Collapse | None = None
        if iteration > 0:
            basis = self.basis(iteration)
            latest = basis == self.state.next_iteration - 1  # the committed state speaks for it (and for old runs)
            pinned = self.state.next_parent if latest else self.records[basis].next_parent
            parent = pinned if pinned is not None else 0
            members = self.population.iterations if latest else list(self.records[basis].population)
            seen = self.records[: basis + 1]
            # Only a model reads the prompt: a nudge recorded for another policy would claim an effect it cannot have.
            collapse = collapse_of(seen, self.settings.collapse_window) if uses_model(self.settings) else None
            prompt = render_proposal(
                self.prompts,
                self.settings,
                self.research,
                seen,
                [seen[i] for i in members],
                iteration,
                parent,
                self.block_of(parent),
                [asset.name for asset in self.data.assets],
                collapse,
            )
            twins = structure_twins(seen) if self.settings.novelty else {}
        self.run.journal("iteration_started", iteration=iteration, parent=parent)
        # One proposal at a time: one seeded stream for the proposer's draws and then the reversion, committed with
        # the state, so a redone iteration proposes the same candidate. In parallel the proposer draws from a stream
        # of its iteration's own (the shared one is only at its committed state for the oldest in flight).
        rng = (
            rng_from_state(self.state.rng)
            if self.settings.parallel == 1
            else random.Random(f"{self.settings.seed}:{iteration}")
        )
        flight = Flight(iteration, parent, prompt, rng, now_iso(), twins=twins, nudged=collapse is not None)
        if parent is not None and self.proposer is None:
            self.proposer = POLICIES.get(self.settings.policy).proposer(
                self.model,
                on_wait=lambda wait: events.put(("wait", wait)),
                on_note=lambda line: events.put(("note", line)),
            )
        threading.Thread(
            target=self.fly, args=(flight, events), name=f"autotrade-iteration-{iteration}", daemon=True
        ).start()
        return flight

    def fly(self, flight: Flight, events: queue.SimpleQueue) -> None:
        """Propose (unless the baseline), parse and evaluate one iteration, off the main thread; a reply that fails
        in a way its error can fix gets that error in the same conversation, up to --repair more turns.

        It writes no file and reports nothing itself: the main thread commits in iteration order, so an iteration
        abandoned at a stop leaves nothing behind. Any exception is kept for the main thread to raise."""
        try:
            if flight.parent is None:
                self.evaluate(flight, self.start_block, events)
                return
            assert self.proposer is not None
            request = ProposalRequest(
                flight.iteration, flight.parent, self.block_of(flight.parent), flight.prompt, flight.rng
            )
            failure: tuple[str, str] | None = None  # the status and error text the next turn answers
            phase = POLICIES.get(self.settings.policy).phase
            while not flight.cancelled.is_set():
                events.put(("phase", (flight, phase)))
                proposal = self.proposer.propose(request)
                try:
                    reply: ParsedReply | ReplyError = parse_reply(
                        proposal.text,
                        request.parent_block,
                        proposal.finish_reason,
                        reply_format=self.settings.reply_format,
                        reasoning=proposal.reasoning,
                    )
                except ReplyError as exc:
                    reply = exc
                sent = sum(len(m["content"]) for m in messages(request.prompt, request.repairs))
                exchange = Exchange(proposal, reply, sent, *(failure or (None, None)))
                flight.exchanges.append(exchange)
                events.put(("reply", (flight.iteration, len(flight.exchanges) - 1, exchange)))
                flight.evaluation = None
                if isinstance(reply, ParsedReply):
                    self.evaluate(flight, reply.block, events)
                failure = self.repairable_failure(flight)
                if failure is None or len(flight.exchanges) > self.repair_turns:
                    return
                phase = f"repairing ({failure[0]}, turn {len(flight.exchanges)} of {self.repair_turns})"
                # The reply as the model said it, its reasoning left out: the next turn must not re-read it.
                request = replace(request, repairs=(*request.repairs, (strip_reasoning(proposal.text), failure[1])))
        except BaseException as exc:  # noqa: BLE001 - raised again by the main thread when this iteration's turn comes
            flight.error = exc
        finally:
            flight.done.set()
            events.put(("done", flight))

    def evaluate(self, flight: Flight, block: str, events: queue.SimpleQueue) -> None:
        """Evaluate a flight's block (on its thread), unless the flight was abandoned meanwhile or the block repeats
        a structure committed up to its basis (then the twin's result is reused at commit)."""
        if flight.cancelled.is_set():
            return
        flight.twin = flight.twins.get(block_structure(block) or "")
        if flight.twin is not None:
            flight.evaluation = Evaluation(Status.DUPLICATE, structure_message(flight.twin, reused=True))
            return
        events.put(("phase", (flight, "evaluating")))
        mark = time.monotonic()
        flight.evaluation = evaluate_block(block, self.data, RESEARCH_WINDOWS, self.eval, self.pool)
        flight.eval_s += time.monotonic() - mark

    @staticmethod
    def repairable_failure(flight: Flight) -> tuple[str, str] | None:
        """The status and error text of a flight's last turn when an error message might fix it; None otherwise."""
        reply = flight.exchanges[-1].reply
        if isinstance(reply, ReplyError):
            status, text = Status(reply.status), describe_failure(reply.status, str(reply))
        else:
            evaluation = flight.evaluation
            if evaluation is None:  # abandoned before it was evaluated
                return None
            status = evaluation.status
            text = describe_failure(status, evaluation.message, evaluation.error_type, evaluation.traceback)
        return (status.value, text) if status.repairable else None

    def land(self, flight: Flight, events: queue.SimpleQueue) -> Attempt:
        """Wait for the oldest iteration in flight, handling what the threads report meanwhile, then commit it.

        Only the oldest iteration's phases are shown (the run waits on it); one it entered while a younger flight
        was oldest is shown when its turn comes."""
        if flight.missed_phase is not None:
            self.reporter.phase(flight.iteration, flight.missed_phase)
        while not flight.landed:
            try:
                kind, payload = events.get(timeout=0.5)  # a timeout, so Ctrl-C is never held up
            except queue.Empty:
                continue
            self.handle(kind, payload, flight)
        if flight.error is not None:
            raise flight.error
        return self.commit_flight(flight)

    def turn_of(self, i: int, k: int, exchange: Exchange) -> Turn:
        """The k-th model call of iteration i (0: the first; then its repairs), as recorded; the reply file (and the
        server's separate reasoning, when it sent any) is written."""
        proposal = exchange.proposal
        stem = f"repair_{k}" if k else "response"
        self.run.write_text(self.run.iter_path(i, f"{stem}.md"), proposal.text)
        if proposal.reasoning:  # the server's reasoning field; reasoning inside think tags stays in the reply's file
            self.run.write_text(
                self.run.iter_path(i, f"repair_{k}_reasoning.md" if k else "reasoning.md"), proposal.reasoning
            )
        turn = Turn(
            model=proposal.model,
            finish_reason=proposal.finish_reason,
            prompt_tokens=proposal.prompt_tokens,
            completion_tokens=proposal.completion_tokens,
            usage_estimated=proposal.usage_estimated,
            latency_s=round(proposal.latency_s, 3),
            prompt_chars=exchange.prompt_chars,
            reply_chars=len(proposal.text),
            reasoning_chars=len(proposal.reasoning),
            deadline_hits=proposal.deadline_hits,
            early_stop=proposal.early_stop,
            received_chars=proposal.received_chars if proposal.early_stop else 0,
            error_status=exchange.error_status,
            error=exchange.error,
        )
        if isinstance(exchange.reply, ParsedReply):
            turn = replace(turn, reply_source=exchange.reply.source, kept_from_parent=exchange.reply.kept_from_parent)
        return turn

    def journal_reply(self, i: int, k: int, exchange: Exchange) -> None:
        """The journal's line for the k-th reply of iteration i as it arrives: the report counts what a reply cost
        even when its iteration never commits (dropped at a stop, or cut off by a kill)."""
        proposal = exchange.proposal
        self.run.journal(
            "model_reply",
            iteration=i,
            **({"repair": k, "error_status": exchange.error_status} if k else {}),
            finish_reason=proposal.finish_reason,
            prompt_tokens=proposal.prompt_tokens,
            completion_tokens=proposal.completion_tokens,
            latency_s=round(proposal.latency_s, 3),
            **({"early_stop": proposal.early_stop} if proposal.early_stop else {}),
        )

    def endpoint_wait(self, wait: EndpointWait) -> None:
        """Journal a wait for the endpoint (the morning after shows how long the server was away) and show it."""
        self.run.journal(
            "endpoint_wait",
            iteration=self.state.next_iteration,
            problem=wait.problem,
            tries=wait.tries,
            retry_in_s=round(wait.retry_in_s, 3),
            patience_left_s=round(wait.patience_left_s, 3),
        )
        self.reporter.waiting(wait)

    def commit_flight(self, flight: Flight) -> Attempt:
        """Commit the oldest iteration in flight, in iteration order: its files, record and the run's state."""
        i, parent = flight.iteration, flight.parent
        reply = flight.exchanges[-1].reply if flight.exchanges else None
        if flight.exchanges and uses_model(self.settings):  # the prompt a model was sent, for `autotrade export`
            self.run.write_text(self.run.iter_path(i, "prompt.md"), flight.prompt)
        turns = tuple(self.turn_of(i, k, exchange) for k, exchange in enumerate(flight.exchanges))
        hypothesis = reply.learnings if isinstance(reply, ParsedReply) else ""
        block = reply.block if isinstance(reply, ParsedReply) else (self.start_block if parent is None else None)
        # Only where the run refuses duplicates: an older run's new records keep the keys of its old ones.
        structure = block_structure(block) if block is not None and self.settings.novelty else None
        twin, reused = None, None
        if isinstance(reply, ReplyError):
            evaluation = Evaluation(status=Status(reply.status), message=str(reply))
            value, eval_s = None, round(flight.eval_s, 3)  # what evaluating its earlier turns took
        else:
            assert block is not None and flight.evaluation is not None
            self.write_attempt(i, block)
            evaluation = flight.evaluation
            if flight.twin is not None:
                twin, reused = (flight.twin, None), self.records[flight.twin]
            elif self.settings.novelty:  # against all committed before it, in iteration order: timing never decides
                evaluation, twin = judge(evaluation, structure, self.records, self.population.iterations)
            value = self.score_of(evaluation)
            mark = time.monotonic()
            if value is not None and evaluation.pending_cuts and self.population.admit(i, value)[1]:
                # No unchecked cut enters the population (decided here, against the population as committed).
                self.reporter.phase(i, "checking the deferred look-ahead cuts")
                evaluation = finish_gate(evaluation, block, self.data, self.eval, RESEARCH_WINDOWS, self.pool)
                value = self.score_of(evaluation)
            eval_s = round(flight.eval_s + time.monotonic() - mark, 3)
        rng = flight.rng if self.settings.parallel == 1 else rng_from_state(self.state.rng)
        step = record_outcome(self.population, self.state.fail_streak, i, value)
        next_parent = choose_parent(step.population, i, step.entered, rng)
        figures = evaluation.to_record()  # JSON-safe: a non-finite metric is None, timings rounded
        windows = reused.windows if reused is not None else figures["windows"]
        attempt = Attempt(
            iteration=i,
            parent=parent,
            policy=self.settings.policy,
            evaluated_with=self.rules,
            status=evaluation.status,
            message=evaluation.message,
            error_type=evaluation.error_type,
            traceback=evaluation.traceback,
            windows=windows,
            parts=reused.parts if reused is not None else figures.get("parts", {}),
            columns=reused.columns if reused is not None else evaluation.columns,
            warnings=evaluation.warnings,
            suspicious=evaluation.suspicious,
            deferred_cuts=evaluation.pending_cuts,
            output=evaluation.output,
            timings=figures["timings"],
            eval_s=eval_s,
            block=block,
            structure=structure,
            twin=twin[0] if twin is not None else None,
            twin_correlation=None if twin is None or twin[1] is None else round(twin[1], 4),
            saved_s=reused.eval_s if reused is not None else 0.0,
            positions=encode_positions(validation_positions(evaluation))
            if evaluation.ok and self.settings.novelty
            else None,
            # Only where the run watches for a collapse: an older run's new records keep the keys of its old ones.
            families=block_families(block) if block is not None and self.settings.collapse_window else None,
            train_return=window_return(windows, "train"),
            val_return=window_return(windows, "val"),
            objective_name=self.settings.objective,
            objective=value,
            entered_population=step.entered,
            population=tuple(step.population.iterations),
            fail_streak=step.fail_streak,
            next_parent=next_parent,
            hypothesis=hypothesis,
            nudged=flight.nudged,
            turns=turns,
            started_at=flight.started_at,
            finished_at=now_iso(),
        )
        self.run.write_record(attempt)
        self.records.append(attempt)
        totals = dict(self.state.totals)
        totals["prompt_tokens"] = totals.get("prompt_tokens", 0) + attempt.prompt_tokens
        totals["completion_tokens"] = totals.get("completion_tokens", 0) + attempt.completion_tokens
        totals["model_s"] = totals.get("model_s", 0.0) + attempt.latency_s
        totals["eval_s"] = totals.get("eval_s", 0.0) + attempt.eval_s
        new_state = replace(
            self.state,
            next_iteration=i + 1,
            population=step.population.to_list(),
            fail_streak=step.fail_streak,
            next_parent=next_parent,
            rng=rng_state(rng),
            best_iteration=step.population.best.iteration if step.population.best else None,
            totals=totals,
        )
        self.write_derived(step.population)
        self.commit(new_state)
        self.journal_commit(attempt)
        return attempt

    # -- the session ---------------------------------------------------------------------------
    def stop_reason(self) -> str | None:
        """Why the run must stop now, or None to go on."""
        if self.state.next_iteration >= self.settings.max_iter:
            return StopReason.MAX_ITER
        if self.state.fail_streak >= self.settings.max_fails:
            return StopReason.MAX_FAILS
        spent = budget.exhausted(self.settings, self.state.totals)
        return None if spent is None else StopReason(spent)

    def result(self, status: str, reason: str | None, message: str = "", already: bool = False) -> RunResult:
        """The RunResult of the committed state."""
        return RunResult(
            name=self.run.name,
            path=self.run.path,
            status=status,
            stop_reason=reason,
            message=message,
            iterations=self.state.next_iteration,
            population=[self.records[i] for i in self.population.iterations],
            objective=self.settings.objective,
            already_finished=already,
        )

    def stop(self, reason: str, message: str, in_flight: Iterable[int] = (), **details: Any) -> RunResult:
        """Stop cleanly: the state stays at the last commit (re-read: a commit may have just landed); the iterations
        `in_flight` are dropped, to be redone on resume."""
        self.state = self.run.read_state() or self.state
        self.records = self.records[: self.state.next_iteration]
        try:
            self.repair(f"`autotrade resume {self.run.name}`", in_flight)
            self.commit(replace(self.state, status=RunStatus.STOPPED, stop_reason=reason))
            self.run.journal(
                "stopped", reason=reason, message=message, next_iteration=self.state.next_iteration, **details
            )
        except StorageError as exc:
            # Nothing more can be written (a full disk): state.json keeps the last commit, which already says stopped.
            if reason != StopReason.STORAGE:
                reason, message = StopReason.STORAGE, str(exc)
        result = self.result(RunStatus.STOPPED, reason, message)
        self.reporter.end(result)
        return result

    def fill(self, flights: dict[int, Flight], events: queue.SimpleQueue) -> None:
        """Launch every iteration whose basis has committed, up to --parallel in flight and --max-iter in all."""
        done = self.state.next_iteration
        ceiling = min(self.settings.max_iter, done + self.settings.parallel if done > 0 else 1)
        for i in range(max(flights, default=done - 1) + 1, ceiling):
            flights[i] = self.launch(i, events)

    def abandon(self, flights: dict[int, Flight], events: queue.SimpleQueue) -> list[int]:
        """Stop the iterations still in flight (a stop rule held, or the run stops; they are redone on resume) and
        journal the replies that arrived for them; return their numbers."""
        dropped = sorted(flights)
        for flight in flights.values():
            flight.cancelled.set()
        if flights and self.proposer is not None:
            self.proposer.close()  # ends their requests: the servers stop generating replies nobody will read
            self.proposer = None
        flights.clear()
        while True:
            try:
                kind, payload = events.get_nowait()
            except queue.Empty:
                return dropped
            self.handle(kind, payload, None)

    def handle(self, kind: str, payload: Any, oldest: Flight | None) -> None:
        """One report of the iterations in flight: a reply journaled, a note shown, and while `oldest` waits to
        land, a wait journaled and shown and a phase shown (or kept for when its iteration is the oldest).

        `oldest` None: the run is stopping, so waits and phases are spent; replies and notes still count."""
        if kind == "reply":
            self.journal_reply(*payload)
        elif kind == "note":
            self.reporter.note(payload)
        elif oldest is None:
            return
        elif kind == "wait":
            self.endpoint_wait(payload)
        elif kind == "phase":
            other, text = payload
            if other is oldest:
                self.reporter.phase(oldest.iteration, text)
            else:
                other.missed_phase = text
        elif kind == "done":
            payload.landed = True  # its thread is finished; the event that said so is spent

    def drive(self, pool: SandboxPool) -> RunResult:
        """Iterate until a stop rule holds, Ctrl-C, or an endpoint error; always leave a resumable state.

        `pool` runs this session's evaluations (its caller closes it).
        """
        self.pool = pool
        with self.run.locked():
            self.repair()
            # Only the lock says "running": a process that dies (killed, disk full) leaves a state that says stopped.
            self.commit(replace(self.state, status=RunStatus.STOPPED, stop_reason=None))
            self.reporter.begin(self.run, self.settings, self.config["model"], self.standing())
            events: queue.SimpleQueue = queue.SimpleQueue()  # what the iterations in flight report
            flights: dict[int, Flight] = {}
            try:
                while (reason := self.stop_reason()) is None:
                    self.fill(flights, events)
                    attempt = self.land(flights[self.state.next_iteration], events)
                    del flights[attempt.iteration]
                    self.reporter.iteration(attempt, self.standing())
            except KeyboardInterrupt:
                return self.stop(StopReason.INTERRUPTED, "interrupted", self.abandon(flights, events))
            except EndpointError as exc:
                return self.stop(
                    StopReason.ENDPOINT, str(exc), self.abandon(flights, events), deadline_hit=exc.deadline_hit
                )
            except SandboxError as exc:
                return self.stop(StopReason.SANDBOX, str(exc), self.abandon(flights, events))
            except StorageError as exc:
                return self.stop(StopReason.STORAGE, str(exc), self.abandon(flights, events))
            finally:
                self.abandon(flights, events)
            self.commit(replace(self.state, status=RunStatus.FINISHED, stop_reason=reason))
            self.run.journal("finished", reason=reason, iterations=self.state.next_iteration)
            spent = reason in (StopReason.BUDGET_TOKENS, StopReason.BUDGET_MINUTES)
            message = budget.spent_line(reason, self.settings, self.state.totals) if spent else ""
            result = self.result(RunStatus.FINISHED, reason, message)
            self.reporter.end(result)
            return result


def start_source(start_from: Path | None) -> str:
    """The run's starting trade.py: --from's file (a whole trade.py, or a block spliced into the baseline)."""
    if start_from is None:
        return baseline_source()
    text = read_source(start_from)
    if has_delimiters(text):
        return text
    return splice_block(baseline_source(), read_block(start_from))


def uses_model(settings: RunSettings) -> bool:
    """True when the run's proposals come from the model at an endpoint (which then needs a preflight)."""
    return POLICIES.get(settings.policy).needs_endpoint


def model_config(policy: str, model: ModelSettings | None) -> dict[str, Any]:
    """config.json's `model`: the endpoint without its key, or a policy's name and no URL when it has no endpoint."""
    if not POLICIES.get(policy).needs_endpoint or model is None:
        return {
            "base_url": None,
            "model": policy,
            "temperature": None,
            "max_tokens": None,
            "extra_body": None,
            "timeout_s": None,
        }
    return public_model_config(model)


def start_run(
    settings: RunSettings,
    model: ModelSettings | None,
    reporter: Reporter,
    *,
    prompts: PromptFiles,
    name: str | None = None,
    root: Path = Path("train"),
) -> RunResult:
    """Preflight (model policy), create train/<name>/, and run: iteration 0 is the starting trade.py, then proposals.

    A name that is taken is refused, unless its directory holds a start that never committed (then it is reused);
    without a name the run gets `<ticker>-<time>`, with a suffix when another run took that in the same second.
    """
    if name is not None:
        check_name(name)  # before anything slow
    data = load_prepared(Path(settings.data_dir))
    if settings.folds > 1:  # folds too many for any asset's history: refused before anything is written
        EvalPlan.of(data, RESEARCH_WINDOWS, Folds(settings.folds, settings.window_mode)).bars()
    source = start_source(Path(settings.start_from) if settings.start_from else None)
    # Before anything is written: prompts that cannot render (they are pinned in config.json, so resume could not
    # get past them either), a wrong URL or a wrong model must not leave a run behind.
    chars = (
        estimate_prompt_chars(
            prompts, settings, data.research_frame(), extract_block(source), [a.name for a in data.assets]
        )
        if settings.max_iter > 1
        else 0
    )
    if not uses_model(settings):
        model = None  # the random policy never talks to an endpoint
    elif model is None:
        raise ConfigError("the model policy needs endpoint settings")
    session = model  # the endpoints this session asks
    if model is not None and settings.max_iter > 1:
        session = check_endpoint(model, chars, reporter)
        model = replace(model, model=session.model)  # what the run records: every endpoint given, answering or not
    # A starting file the sandbox guard cannot protect would make every written trade.py unsafe to run.
    runnable_source(source, extract_block(source), "the starting trade.py")
    with SandboxPool() as pool:  # one fork server: the layer probe and every evaluation of the run
        sandbox = sandbox_layers(reporter, pool)
        ticker = str(data.meta.get("ticker") or data.meta.get("dataset") or "run")
        run = RunDir.create_unique(root, default_name(ticker)) if name is None else RunDir.create(root, name)
        config = {
            "name": run.name,
            "created_at": datetime.now(UTC).isoformat(),
            "autotrade_version": __version__,
            "settings": settings.to_dict(),
            "policy": settings.policy,
            "model": model_config(settings.policy, model),
            "data": {
                **data_identity(data),
                "dir": settings.data_dir,
                "ticker": ticker,
                "research_bars": len(data.research_frame()),
            },
            "prompts": {
                "program": prompts.program,
                "template": prompts.template,
                "sources": [prompts.program_source, prompts.template_source],
            },
            "start_source": source,
            "sandbox": sandbox,
        }
        with run.locked():  # held on into drive(): no other process can take over the directory meanwhile
            run.claim()
            try:
                run.write_json(run.config_path, config)
                run.write_state(
                    RunState(
                        rng=rng_state(random.Random(settings.seed)),
                        gate_secret=secrets.randbits(63),
                        updated_at=now_iso(),
                    )
                )
                run.journal(
                    "run_started",
                    settings=settings.to_dict(),
                    policy=settings.policy,
                    model=config["model"],
                    data=config["data"],
                )
            except StorageError:
                run.discard_unstarted()  # nothing was committed: leave no half-made run behind
                raise
            return Research(run, config, session, data, reporter).drive(pool)


def sandbox_layers(reporter: Reporter, pool: SandboxPool) -> dict[str, bool | str]:
    """The isolation layers this machine gives (measured in a worker child); each one that is off is named, with why.

    Raises SandboxError when no worker can be started at all: no run should spend its iterations on that.
    """
    layers = pool.probe_layers()
    for name, state in layers.items():
        if state is not True:
            reporter.note(f"sandbox: {name} is off here: {state}")
    return layers


def pinned_model(
    config: Mapping[str, Any],
    api_key: str,
    base_url: str | None,
    timeout_s: float | None,
    patience_s: float | None = None,
) -> ModelSettings:
    """The endpoint settings a run recorded, with the key (and the patience) from the environment and an optional
    new URL."""
    recorded = config["model"]
    patience = (
        {} if patience_s is None else {"patience_s": patience_s}
    )  # not pinned: how long to wait is tonight's call
    return ModelSettings(
        **patience,
        base_url=base_url or recorded["base_url"],
        api_key=api_key,
        model=recorded["model"],
        timeout_s=timeout_s or recorded.get("timeout_s") or 600.0,
        max_tokens=recorded.get("max_tokens"),
        temperature=recorded.get("temperature"),
        extra_body=recorded.get("extra_body"),
    )


def resume_run(
    run: RunDir,
    reporter: Reporter,
    *,
    api_key: str = "",
    base_url: str | None = None,
    timeout_s: float | None = None,
    patience_s: float | None = None,
    max_iter: int | None = None,
    budget_tokens: int | None = None,
    budget_minutes: float | None = None,
) -> RunResult:
    """Continue a run exactly where its last commit left it; a finished run just says so.

    `max_iter` and the budgets raise the run's limits (never an evaluation rule), so a run that reached one goes on.
    """
    run.check()
    config = run.read_config()
    settings, raised = budget.raise_limits(
        RunSettings.from_dict(config["settings"]),
        run.name,
        max_iter=max_iter,
        budget_tokens=budget_tokens,
        budget_minutes=budget_minutes,
    )
    if raised:
        config = {**config, "settings": settings.to_dict()}
    if base_url and not uses_model(settings):
        raise ConfigError(f"run {run.name!r} uses the {settings.policy} policy: it has no endpoint to move")
    data = load_prepared(Path(settings.data_dir))
    pinned = {k: config["data"].get(k) for k in ("sha256", "val_start", "test_start")}
    if data_identity(data) != pinned:
        raise ConfigError(
            f"the prepared data in {settings.data_dir} is not the data run {run.name!r} started with "
            f"(sha256 or split dates differ): restore it, or start a new run"
        )
    model = pinned_model(config, api_key, base_url, timeout_s, patience_s) if uses_model(settings) else None
    moved = display_url(base_url) if base_url else None  # what config.json may hold: no user:password, no query
    if moved == config["model"]["base_url"]:
        moved = None
    if moved:
        config = {**config, "model": {**config["model"], "base_url": moved}}
    research = Research(run, config, model, data, reporter)
    if research.state.status == RunStatus.FINISHED and research.stop_reason() is not None:
        result = research.result(RunStatus.FINISHED, research.state.stop_reason, already=True)
        reporter.end(result)
        return result
    if research.model is not None and research.stop_reason() is None and settings.max_iter > 1:
        chars = estimate_prompt_chars(
            research.prompts,
            settings,
            research.research,
            research.start_block,
            [asset.name for asset in research.data.assets],
        )
        research.model = check_endpoint(research.model, chars, reporter)
    if moved or raised:
        # Recorded once the new endpoint answered, so the run's own lines and every later resume use them.
        run.write_json(run.config_path, config)
    if moved:
        run.journal("endpoint_moved", base_url=moved)
    for key, value in raised.items():
        run.journal(f"{key}_raised", **{key: value})
    with SandboxPool() as pool:  # one fork server: the layer probe and every evaluation of this session
        run.journal("resumed", next_iteration=research.state.next_iteration, sandbox=sandbox_layers(reporter, pool))
        return research.drive(pool)
