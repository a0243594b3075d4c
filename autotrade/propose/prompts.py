"""The prompt: `program.md` (instructions) rendered through `prompt_template.md` (placeholders).

Both files are user-editable: `prompts/` in the working directory overrides the packaged
defaults. Placeholders are `{{name}}`, substituted in one pass, so code or learnings that happen
to contain braces are never expanded again. Only research data reaches a prompt: the columns
and sample rows come from the research frame's first rows, and population metrics are train
and validation only — never the test window.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from autotrade.contract import BUY, FEATURES, FUNCTIONS, HOLD, MODULES, SELL, STRATEGY
from autotrade.errors import ConfigError
from autotrade.fmt import first_line, pct

PROGRAM_FILE = "program.md"
TEMPLATE_FILE = "prompt_template.md"
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
SAMPLE_ROWS = 5
TRACEBACK_LINES = 12  # the end of a traceback is where the cause is
TRACEBACK_CHARS = 1500
REPAIR_MESSAGE_CHARS = 2000  # an error message quoted back to the model (vetting's can list many findings)


class Shown(Protocol):
    """An earlier iteration as a prompt shows it: the loop's attempts are these (propose never imports research)."""

    @property
    def iteration(self) -> int: ...
    @property
    def parent(self) -> int | None: ...
    @property
    def status(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def error_type(self) -> str | None: ...
    @property
    def traceback(self) -> str: ...
    @property
    def windows(self) -> Mapping[str, Mapping[str, float | None]]: ...
    @property
    def parts(self) -> Mapping[str, Mapping[str, Mapping[str, float | None]]]: ...
    @property
    def objective(self) -> float | None: ...
    @property
    def entered_population(self) -> bool: ...
    @property
    def hypothesis(self) -> str: ...
    @property
    def suspicious(self) -> Sequence[str]: ...


def percent(value: float | None) -> str:
    """A fraction as a signed percentage with two decimals; 'n/a' when missing (the model reads these lines)."""
    return pct(value, missing="n/a")


@dataclass(frozen=True)
class PromptFiles:
    """The instruction and template texts, and where each came from."""

    program: str
    template: str
    program_source: str
    template_source: str


def packaged_text(name: str) -> str:
    """A packaged default from autotrade/templates/."""
    return resources.files("autotrade").joinpath(f"templates/{name}").read_text(encoding="utf-8")


def load_prompt_files(cwd: Path | None = None) -> PromptFiles:
    """`prompts/program.md` and `prompts/prompt_template.md` from cwd when present, else the packaged defaults."""
    folder = (cwd or Path.cwd()) / "prompts"
    texts: list[tuple[str, str]] = []
    for name in (PROGRAM_FILE, TEMPLATE_FILE):
        path = folder / name
        if path.is_file():
            try:
                texts.append((path.read_text(encoding="utf-8"), str(path)))
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read ({exc})") from None
        else:
            texts.append((packaged_text(name), f"packaged {name}"))
    (program, program_source), (template, template_source) = texts
    return PromptFiles(program, template, program_source, template_source)


def render(text: str, values: Mapping[str, str], where: str) -> str:
    """Substitute every `{{name}}` in one pass; an unknown name is a ConfigError naming the file."""
    unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(text)} - set(values))
    if unknown:
        raise ConfigError(
            f"{where}: unknown placeholder(s) {', '.join('{{' + u + '}}' for u in unknown)}; "
            f"known: {', '.join(sorted(values))}"
        )
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def describe_columns(frame: pd.DataFrame) -> str:
    """One markdown line per column: name and dtype."""
    return "\n".join(f"- `{name}`: {dtype}" for name, dtype in frame.dtypes.items())


def sample_rows(frame: pd.DataFrame, rows: int = SAMPLE_ROWS) -> str:
    """The first rows as a plain table (the research frame's start, never test rows)."""
    return frame.head(rows).to_string()


def engine_rules(fill: str, cost_bps: float) -> str:
    """The backtest rules the candidate is judged by, in plain words."""
    if fill == "close":
        timing = "A signal fills at the same bar's close (the original harness's optimistic convention)."
    else:
        timing = (
            "A signal computed from bar t (its close included) fills at bar t+1's open; "
            "a signal on the last bar never trades."
        )
    return "\n".join(
        [
            "- Long or flat, one instrument, all cash in or all out (fractional shares). No shorting, no leverage.",
            f"- `{STRATEGY}({FUNCTIONS[STRATEGY]})` returns {BUY} = buy (go long with all cash if flat), "
            f"{SELL} = sell (go flat if long), {HOLD} = hold (keep the current position). A buy while long or a sell "
            f"while flat changes nothing; None or NaN counts as {HOLD}.",
            f"- {timing}",
            f"- Each side of a trade costs {cost_bps:g} basis points of the traded value; "
            "an open position is sold at the window's last close.",
            "- Train and validation are simulated separately, each starting flat with fresh cash.",
            "- Features must be causal: the value at a date may use only that bar and earlier ones. The harness "
            "recomputes your features on hundreds of truncated histories (cuts you cannot predict, many right "
            "before the largest moves) and rejects the candidate (status `lookahead`) if any past value changes "
            "at all: no unlagged negative `shift`, `center=True` or `bfill`, no statistics over the whole sample.",
            f"- `{STRATEGY}` runs in a fresh copy of your module, once per bar in date order: it may keep its own "
            f"state between calls, but it cannot see anything `{FEATURES}` stored in globals (put it in a "
            "column instead).",
            "- The first rows of rolling features are NaN; comparisons with NaN are False, so handle them (return 0).",
            "- A strategy that never trades in the validation window scores nothing (status `no_trades`).",
            f"- {_provided_modules()} are provided; importing anything else is rejected. Also rejected: "
            "file, network and system access, pandas/numpy I/O (`read_*`, `to_*`, `np.load`/`np.save`), "
            "`eval`/`exec`/`compile`/`open`/`getattr`/`setattr`/`globals`/`locals`, `DataFrame.eval`/`query`, "
            "double-underscore attributes, classes and decorators.",
        ]
    )


def _provided_modules() -> str:
    """The modules the block is given, as the prompt names them: '`pd` (pandas), `np` (numpy) and `math`'."""
    names = [f"`{alias}`" if alias == module else f"`{alias}` ({module})" for alias, module in MODULES.items()]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _metric_line(metrics: Mapping[str, Any]) -> str:
    """Return, Sharpe, drawdown and trades of one window."""

    def number(key: str, fmt: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else fmt.format(value)

    return (
        f"return {percent(metrics.get('total_return'))}, Sharpe {number('sharpe', '{:.2f}')}, "
        f"max drawdown {number('max_drawdown', '{:.1%}')}, {number('num_trades', '{:.0f}')} trades, "
        f"exposure {number('exposure', '{:.0%}')}"
    )


def _headline(shown: Shown, window: str, across: str) -> str:
    """'validation' of one part, or 'validation (worst of 6 parts)' of an aggregate."""
    name = {"train": "train", "val": "validation"}[window]
    return f"{name} ({across} of {len(shown.parts)} parts)" if shown.parts else name


def _part_lines(shown: Shown, indent: str) -> str:
    """Each part's validation line (assets × folds) with that part's buy-and-hold, so the model sees where a
    strategy fails and against what."""
    return "".join(
        f"\n{indent}{label} validation: {_metric_line(windows.get('val', {}))}; "
        f"buy-and-hold {percent(windows.get('val', {}).get('buy_and_hold_return'))}"
        for label, windows in shown.parts.items()
    )


def describe_population(
    members: Sequence[Shown], objective: str, score_text: Callable[[float | None], str], across: str = "worst"
) -> str:
    """The population, best first, each with train and validation metrics (and each part's), then buy-and-hold.

    ``score_text`` writes an objective value as the objective formats it (the research stage passes the registry's);
    ``across`` names how a multi-part evaluation's headline metrics were aggregated.
    """
    if not members:
        return "(empty: no iteration has passed every check yet)"
    lines = []
    for rank, member in enumerate(members, start=1):
        windows = member.windows
        lines.append(
            f"{rank}. iteration {member.iteration} — {objective} {score_text(member.objective)}\n"
            f"   {_headline(member, 'train', across)}: {_metric_line(windows.get('train', {}))}\n"
            f"   {_headline(member, 'val', across)}: {_metric_line(windows.get('val', {}))}"
            + _part_lines(member, "   ")
            + f"\n   hypothesis: {first_line(member.hypothesis or 'baseline', 160)}"
            + "".join(f"\n   SUSPICIOUS: {why}" for why in member.suspicious)
        )
    windows = members[0].windows
    # Of several parts, the worst buy-and-hold may be another part's than the worst return's.
    lines.append(
        "Buy-and-hold for comparison: each part's validation line gives its own."
        if members[0].parts
        else "Buy-and-hold for comparison: "
        f"train {percent(windows.get('train', {}).get('buy_and_hold_return'))}, "
        f"validation {percent(windows.get('val', {}).get('buy_and_hold_return'))}."
    )
    return "\n".join(lines)


def trim_traceback(text: str, lines: int = TRACEBACK_LINES, chars: int = TRACEBACK_CHARS) -> str:
    """The last lines of a traceback, where the cause is, within a character limit."""
    kept = text.strip().splitlines()[-lines:]
    out = "\n".join(kept)
    return out[-chars:]


def describe_outcome(last: Shown | None, across: str = "worst") -> str:
    """The previous iteration's outcome: results when ok, else status, message and trimmed traceback."""
    if last is None:
        return "(none yet)"
    who = f"Iteration {last.iteration}" + (
        " (the starting trade.py)" if last.parent is None else f" (parent {last.parent})"
    )
    windows = last.windows
    if last.status == "ok":
        entered = (
            "It entered the population."
            if last.entered_population
            else (
                "It did not score high enough to enter the population, "
                "so this proposal branches from a population member."
            )
        )
        warning = "".join(f"\nSUSPICIOUS: {why}." for why in last.suspicious)
        return (
            f"{who}: ok.\n- {_headline(last, 'train', across)}: {_metric_line(windows.get('train', {}))}\n"
            f"- {_headline(last, 'val', across)}: {_metric_line(windows.get('val', {}))}"
            f"{_part_lines(last, '- ')}\n{entered}{warning}"
        )
    kind = f" ({last.error_type})" if last.error_type else ""
    parts = [f"{who} FAILED with status `{last.status}`{kind}: {last.message or '(no message)'}"]
    if windows.get("val"):
        parts.append(f"- {_headline(last, 'val', across)}: {_metric_line(windows['val'])}{_part_lines(last, '- ')}")
    if last.traceback:
        parts.append("Traceback (last lines):\n```\n" + trim_traceback(last.traceback) + "\n```")
    # A duplicate has nothing to fix: the same idea again would repeat it again.
    parts.append(
        "Try a different idea; it counts as a failed iteration."
        if last.status == "duplicate"
        else "Fix the cause; it counts as a failed iteration."
    )
    return "\n".join(parts)


@dataclass(frozen=True)
class PromptContext:
    """Everything a prompt is rendered from (each a ready string)."""

    iteration: str
    last_iteration: str
    objective: str
    objective_description: str
    columns: str
    sample_rows: str
    engine_rules: str
    parent_iteration: str
    parent_code: str
    population: str
    last_outcome: str
    learnings: str


def collapse_section(family: str, window: int, others: Sequence[str]) -> str:
    """The section a prompt ends with once the search has collapsed: the last `window` working strategies were all
    in one structure family (`family`, in words), so the model is asked for another (`others`, named as examples).

    Appended after the rendered template, so a run's pinned program and template need no edit."""
    listed = ", ".join(others[:-1]) + " or " + others[-1] if len(others) > 1 else "".join(others)
    examples = f", for example {listed}" if others else ""
    return (
        "## The search has collapsed\n"
        f"Your last {window} working strategies were all built on the same indicators: {family}. "
        f"Propose a strategy from a different family this time{examples}, even if it departs from your starting "
        "point's approach.\n"
    )


def build_prompt(files: PromptFiles, context: PromptContext) -> str:
    """program.md rendered with the context, then the template with the program and the context."""
    values = asdict(context)
    program = render(files.program, values, files.program_source).strip()
    return render(files.template, {**values, "program": program}, files.template_source).strip() + "\n"


def messages(prompt: str, repairs: Sequence[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """The chat messages for one proposal: the prompt as a user turn (every chat template accepts that), then for
    each repair (`repairs`: the earlier reply's content and what was wrong with it) the reply as the assistant's turn
    and the error as the user's, so that user and assistant alternate as every chat template expects."""
    conversation = [{"role": "user", "content": prompt}]
    for reply, error in repairs:
        conversation += [{"role": "assistant", "content": reply}, {"role": "user", "content": repair_request(error)}]
    return conversation


def describe_failure(status: str, message: str, error_type: str | None = None, traceback: str = "") -> str:
    """What went wrong with a reply, as its repair turn tells the model: the status, the exact message and the
    traceback's last lines (each within a size a prompt can afford)."""
    kind = f" ({error_type})" if error_type else ""
    text = f"status `{status}`{kind}: {(message or '(no message)')[:REPAIR_MESSAGE_CHARS]}"
    if traceback:
        text += "\nTraceback (last lines):\n```\n" + trim_traceback(traceback) + "\n```"
    return text


def repair_request(error: str) -> str:
    """The user turn after a reply that failed: the error, and the way to answer it."""
    return (
        f"Your reply could not be used: {error}\n\n"
        "Fix the cause and reply again in the same format as before, with the whole corrected code "
        "(every function, not only the changed lines)."
    )
