"""Render and store a Report: rich tables for the terminal, PNG plots, a self-contained report.html, report.json.

Tables are built once as plain rows of text (`sections`) and laid out twice: as rich tables and as HTML,
so the terminal and the browser always show the same figures.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from autotrade.evaluation.families import family_name
from autotrade.evaluation.objectives import format_score, has_own_column
from autotrade.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from autotrade.fmt import hms, num, pct
from autotrade.report.compare import Footing, Leg
from autotrade.report.compute import DSR_BAR, REPORT_JSON, Overfitting, Report, RunSummary, summary
from autotrade.report.plots import equity_plot, objective_plot

HTML_FILE = "report.html"
EQUITY_PNG = "report_equity.png"
OBJECTIVE_PNG = "report_objective.png"


# -- formatting ----------------------------------------------------------------------------------------


def share(value: float | None) -> str:
    """A fraction as a whole percentage; '—' when missing."""
    return "—" if value is None else f"{value:.0%}"


def duration(seconds: float) -> str:
    """Seconds as '12.3 s' under a minute, else h:mm:ss."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return hms(round(seconds))


def objective_text(objective: str, value: float | None) -> str:
    """An objective value as the objective formats it."""
    return format_score(objective, value)


def short(text: str, limit: int = 70) -> str:
    """One line of at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def value_text(value: object) -> str:
    """A summary value for `key: value` lines: floats to 6 significant digits, None as '—'."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


# -- sections: tables as plain text rows -----------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One table of the report: title, headers, rows of text, an optional note under it; `right` = numeric columns."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""
    right: tuple[bool, ...] = ()
    highlight: tuple[bool, ...] = ()  # per row: a population member


def header_lines(report: Report) -> list[str]:
    """What run this is, in three lines."""
    data = report.data
    who = f"policy {report.policy}" if report.policy != "model" else f"model {report.model} at {report.endpoint}"
    stop = f" ({report.stop_reason})" if report.stop_reason else ""
    return [
        f"run {report.name} · {who} · {report.iterations} of {report.max_iter} iterations · {report.state}{stop}",
        f"objective {report.objective} · fill {report.fill} · cost {report.cost_bps:g} bp per side · "
        f"data {data['ticker']} {data['first']} to {data['last']}, validation from {data['val_start']}, test (held "
        f"out) from {data['test_start']}",
        f"report made {report.generated_at} from {report.path}",
    ]


def leaderboard(report: Report) -> Section:
    """Every iteration: status, train and validation figures, parent; population members marked ★."""
    show_objective = has_own_column(report.objective)
    headers = (
        "iter",
        "pop",
        "status",
        "parent",
        "strategy",
        "train return",
        "train Sharpe",
        "val return",
        "val Sharpe",
        "val max DD",
        "val trades",
        *((report.objective,) if show_objective else ()),
        "why",
    )
    rows, marks = [], []
    for row in report.rows:
        why = (
            short("suspicious: " + "; ".join(row.suspicious), 60)
            if row.suspicious
            else ""
            if row.status == "ok"
            else short(row.message or row.error_type or row.status, 60)
        )
        rows.append(
            (
                str(row.iteration),
                f"★{row.rank}" if row.rank else "",
                row.status,
                "—" if row.parent is None else str(row.parent),
                (report.diversity.structures.get(row.iteration) or "—")[:6],
                pct(row.train.get("total_return")),
                num(row.train.get("sharpe")),
                pct(row.val.get("total_return")),
                num(row.val.get("sharpe")),
                pct(row.val.get("max_drawdown"), 1),
                num(row.val.get("num_trades"), 0),
                *((objective_text(report.objective, row.objective),) if show_objective else ()),
                why,
            )
        )
        marks.append(row.rank is not None)
    right = (
        True,
        False,
        False,
        True,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        *((True,) if show_objective else ()),
        False,
    )
    note = (
        "★ = population member (its rank); the best is ★1. "
        if report.population
        else "No iteration entered the population. "
    ) + ("strategy = the code's structure hash: equal hashes are the same strategy up to names and numbers.")
    return Section("Leaderboard: every iteration", headers, tuple(rows), note, right, tuple(marks))


def _test_row(label: str, w: Mapping[str, Mapping[str, float]]) -> tuple[str, ...]:
    """One line of the held-out table: returns of train, validation and test, then test's risk figures."""
    return (
        label,
        pct(w["train"]["total_return"]),
        pct(w["val"]["total_return"]),
        pct(w["test"]["total_return"]),
        num(w["test"]["sharpe"]),
        pct(w["test"]["max_drawdown"], 1),
        num(w["test"]["num_trades"], 0),
    )


def holdout_section(report: Report) -> Section:
    """The population and buy-and-hold on train, validation and the held-out test."""
    seen = report.holdout
    first = seen.first
    if first is None:
        note = "The held-out test window has never been evaluated for this run."
    else:
        note = (
            f"Held-out test first revealed {first.at} (iterations {', '.join(map(str, first.iterations))}); "
            f"looked at {len(seen.reveals)} time(s) in all. The model never sees these figures."
        )
    headers = ("", "train return", "val return", "test return", "test Sharpe", "test max DD", "test trades")
    rows: list[tuple[str, ...]] = []
    if not seen.looked:
        if first is not None:
            last = seen.reveals[-1]
            for i in last.iterations:
                kept = last.test.get(i) or {}
                rows.append(
                    (
                        f"iter {i} (as revealed {last.at})",
                        "",
                        "",
                        pct(kept.get("total_return")),
                        num(kept.get("sharpe")),
                        pct(kept.get("max_drawdown"), 1),
                        num(kept.get("num_trades"), 0),
                    )
                )
        note += (
            f" {seen.withheld}" if seen.withheld else ("" if rows else " Nothing was evaluated on it by this report.")
        )
        return Section("Held-out test", headers, tuple(rows), note, (False,) + (True,) * 6)
    for i in report.population:
        evaluation = seen.evaluations.get(i)
        if evaluation is None:
            continue
        if not evaluation.ok:
            rows.append(
                (
                    f"★{report.population.index(i) + 1} iter {i}",
                    "",
                    "",
                    f"{evaluation.status}: {short(evaluation.message, 40)}",
                    "",
                    "",
                    "",
                )
            )
            continue
        rows.append(_test_row(f"★{report.population.index(i) + 1} iter {i}", evaluation.windows))
        rows += [_test_row(f"   {label}", windows) for label, windows in evaluation.parts.items()]
        held = seen.held_out.get(i)
        if held is not None:
            name = f"   {report.held_out_asset} (held-out asset)"
            rows.append(_test_row(name, held.windows) if held.ok else (name, "", "", str(held.status), "", "", ""))
    bh = {name: result.metrics for name, result in seen.buy_and_hold.items()}
    rows.append(
        (
            f"buy and hold ({report.assets[0]})" if len(report.assets) > 1 else "buy and hold",
            pct(bh["train"]["total_return"]),
            pct(bh["val"]["total_return"]),
            pct(bh["test"]["total_return"]),
            num(bh["test"]["sharpe"]),
            pct(bh["test"]["max_drawdown"], 1),
            "1",
        )
    )
    return Section(
        "Held-out test: the population beside buy-and-hold", headers, tuple(rows), note, (False,) + (True,) * 6
    )


def overfitting_section(report: Report) -> Section:
    """The overfitting figures, each with its plain sentence."""
    o = report.overfitting
    rows = [(f.label, f.text, f.meaning) for f in report.figures]
    if o.skew is not None:
        rows.append(
            (
                "Skew / kurtosis of daily returns",
                f"{num(o.skew)} / {num(o.kurtosis, 1)}",
                "Shape of the best's validation returns: negative skew and kurtosis above 3 (the normal value) mean "
                "rare large losses, which lower PSR and DSR.",
            )
        )
    if o.n_trials:
        rows.append(
            (
                "Trials (N)",
                f"{o.n_trials} ({o.n_ok_trials} ok)",
                "The distinct strategies whose code ran, failures included, that the validation window chose among: "
                "the more were tried, the higher the best scores by luck alone.",
            )
        )
    if o.dsr_ok_only is not None:
        rows.append(
            (
                "DSR counting ok trials only",
                num(o.dsr_ok_only),
                f"The DSR with N = {o.n_ok_trials}, as if the failures that ran had not been tried: less deflated, "
                "and not the one the verdict uses.",
            )
        )
    return Section(
        "Overfitting: how much of the best result is real",
        ("figure", "value", "what it means"),
        tuple(rows),
        " ".join(o.notes),
        (False, True, False),
    )


def failure_sections(report: Report) -> list[Section]:
    """Outcomes by status, then failures by exception type."""
    t = report.taxonomy
    statuses = Section(
        "Outcomes by status",
        ("status", "count", "share"),
        tuple((s.label, str(s.count), share(s.share)) for s in t.by_status),
        f"{t.iterations} iterations."
        + (
            f" Duplicates: {t.structure_twins} repeated an earlier strategy's structure (its result reused: "
            f"{t.saved_s:.1f} s of evaluation saved), {t.position_twins} moved with a population member's positions."
            if t.structure_twins or t.position_twins
            else ""
        ),
        (False, True, True),
    )
    errors = Section(
        "Failures by type",
        ("type", "count", "share of failures"),
        tuple((s.label, str(s.count), share(s.share)) for s in t.by_error),
        f"{t.failures} of {t.iterations} iterations failed ({share(t.failures / t.iterations)}); the most common "
        "failure: "
        f"{t.by_error[0].label} ({share(t.by_error[0].share)})."
        if t.failures
        else "No failures.",
        (False, True, True),
    )
    return [statuses, errors]


def diversity_sections(report: Report) -> list[Section]:
    """Families and operations used, distinct strategies, collapses of the search, and the population's position
    correlation."""
    d = report.diversity
    families = Section(
        "Indicators used",
        ("family", "strategies", "share of candidates"),
        tuple((f, str(n), share(n / d.candidates)) for f, n in d.family_counts.items()),
        d.verdict()
        + (
            f" {d.repeats} of {d.proposals} proposals repeat an earlier structure, {d.copies_of_start} copy the "
            "starting strategy "
            "(same code up to names and numbers)."
            if d.proposals
            else ""
        ),
        (False, True, True),
    )
    operations = Section(
        "Operations called",
        ("operation", "strategies"),
        tuple((op, str(n)) for op, n in list(d.operation_counts.items())[:15]),
        "",
        (False, True),
    )
    sections = [families, operations, *collapse_sections(report)]
    if len(d.population) >= 2:
        labels = tuple(f"iter {i}" for i in d.population)
        rows = tuple(
            (labels[a], *(num(float(d.correlation[a, b])) for b in range(len(labels)))) for a in range(len(labels))
        )
        mean = num(d.mean_correlation)
        sections.append(
            Section(
                "Population position correlation (train + validation)",
                ("", *labels),
                rows,
                f"Mean pairwise correlation {mean}; at 1 the members hold identical positions (one strategy, copied).",
                (False,) + (True,) * len(labels),
            )
        )
    return sections


def collapse_sections(report: Report) -> list[Section]:
    """When the search collapsed into one structure family, and whether the prompt's nudge moved it (none if never)."""
    if not report.collapses:
        return []
    rows = []
    for e in report.collapses:
        if e.first_nudge is None:
            followed = "no prompt carried the nudge"
        elif not e.after:
            followed = "no ok attempt since"
        elif e.escaped:
            followed = f"{e.escaped} of {e.after} ok in other families"
        else:
            followed = f"{e.after} of {e.after} ok still the same"
        rows.append(
            (
                family_name(e.family),
                str(e.at),
                "—" if e.first_nudge is None else str(e.first_nudge),
                followed,
                objective_text(report.objective, e.best_before),
                "—" if e.first_nudge is None else objective_text(report.objective, e.best_after),
            )
        )
    window = report.collapses[0].window
    return [
        Section(
            "Search collapses",
            ("collapsed into", "at iteration", "nudged from", "after the nudge", "best before", "best after"),
            tuple(rows),
            f"Collapsed: {window} ok attempts in a row used the same indicator families. From then on each prompt "
            "says so and asks for another family, until an ok attempt leaves it (--collapse-window).",
            (False, True, True, False, True, True),
        )
    ]


def spend_section(report: Report) -> Section:
    """Tokens and time."""
    s = report.spend
    rows = [
        ("model calls", f"{s.model_calls:,}"),
        ("tokens in (prompt)", f"{s.prompt_tokens:,}" + (" (some estimated)" if s.usage_estimated else "")),
        ("tokens out (completion)", f"{s.completion_tokens:,}"),
        ("time in the model", duration(s.model_s)),
        ("time evaluating", duration(s.eval_s)),
        ("wall time", duration(s.wall_s)),
    ]
    if s.repair_calls:
        rows.append(
            (
                "repair (--repair)",
                f"{s.repaired:,} iteration(s) saved; {s.repair_calls:,} turn(s), {s.repair_tokens:,} tokens",
            )
        )
    note = (
        f"Includes {s.interrupted_calls} model call(s) ({s.interrupted_tokens:,} tokens) of attempts that were "
        "interrupted before they committed."
        if s.interrupted_calls
        else ""
    )
    return Section("Spend", ("", "value"), tuple(rows), note, (False, True))


def sections(report: Report) -> list[Section]:
    """Every table of the report, in reading order."""
    return [
        leaderboard(report),
        holdout_section(report),
        overfitting_section(report),
        *failure_sections(report),
        *diversity_sections(report),
        spend_section(report),
    ]


def summary_lines(report: Report) -> list[str]:
    """The greppable `key: value` summary."""
    return [f"{key}: {value_text(value)}" for key, value in summary(report).items()]


# -- terminal ------------------------------------------------------------------------------------------------


def plain(cells: Sequence[str]) -> list[Text]:
    """Cells as literal text: messages and names come from model code and users, and rich markup in them
    (pandas' own "... are in the [columns]", a stray "[/x]") must be shown as is, never styled away or crash."""
    return [Text(str(cell)) for cell in cells]


def rich_table(section: Section) -> Table:
    """One section as a rich table."""
    table = Table(
        title=Text(section.title),
        title_justify="left",
        caption=Text(section.note) if section.note else None,
        caption_justify="left",
    )
    for k, header in enumerate(section.headers):
        right = section.right[k] if k < len(section.right) else False
        table.add_column(Text(header), justify="right" if right else "left", overflow="fold")
    for k, row in enumerate(section.rows):
        member = section.highlight[k] if k < len(section.highlight) else False
        table.add_row(*plain(row), style="bold green" if member else None)
    return table


def print_report(report: Report, console: Console, files: Sequence[Path] = ()) -> None:
    """The report on the terminal: header, tables, files written, then the `key: value` summary."""
    for k, line in enumerate(header_lines(report)):
        console.print(Text(line, style="bold" if k == 0 else "dim"), soft_wrap=True)
    for section in sections(report):
        console.print()
        console.print(rich_table(section))
    for note in report.notes:
        console.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    if files:
        console.print()
        console.print(Text("written: " + ", ".join(str(p) for p in files)), soft_wrap=True)
    console.print()
    for line in summary_lines(report):
        console.print(Text(line), soft_wrap=True, highlight=False)


def runs_table(rows: Sequence[RunSummary], title: str) -> Table:
    """`autotrade runs`: one row per run."""
    table = Table(title=title, title_justify="left")
    for header, right in (
        ("name", False),
        ("model", False),
        ("endpoint", False),
        ("iterations", True),
        ("ok", True),
        ("best val return", True),
        ("test return", True),
        ("state", False),
    ):
        table.add_column(header, justify="right" if right else "left", overflow="fold")
    for r in rows:
        who = r.model if r.policy == "model" else f"{r.policy} policy"
        test = pct(r.test_return) if r.test_revealed_at else "not revealed"
        state = r.state if not r.problem else f"damaged: {short(r.problem, 120)}"
        table.add_row(
            *plain((r.name, who, r.endpoint, str(r.iterations), share(r.ok_share), pct(r.best_val_return), test, state))
        )
    return table


COMPARE_ROWS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("policy", "policy"),
    ("endpoint", "endpoint"),
    ("objective", "objective"),
    ("state", "state"),
    ("iterations", "iterations"),
    ("ok share", "ok_share"),
    ("top failure", "top_failure"),
    ("distinct strategies", "distinct_strategies"),
    ("best iteration", "best_iteration"),
    ("best val return", "best_val_return"),
    ("best val Sharpe", "best_val_sharpe"),
    ("best objective", "best_objective"),
    ("test return (revealed)", "test_return"),
    ("tokens in", "prompt_tokens"),
    ("tokens out", "completion_tokens"),
    ("tokens per ok iteration", "tokens_per_ok"),
    ("time in the model", "model_s"),
    ("time evaluating", "eval_s"),
    ("wall time", "wall_s"),
)


def compare_cell(summary_row: RunSummary, key: str) -> str:
    """One figure of one run for `compare`."""
    r = summary_row
    if key == "tokens_per_ok":
        return f"{(r.prompt_tokens + r.completion_tokens) / r.ok:,.0f}" if r.ok else "—"
    if key == "ok_share":
        return f"{share(r.ok_share)} ({r.ok}/{r.iterations})"
    if key == "test_return":
        return pct(r.test_return) if r.test_revealed_at else "not revealed"
    value = getattr(r, key)
    if key in ("best_val_return",):
        return pct(value)
    if key == "best_val_sharpe":
        return num(value)
    if key == "best_objective":
        return objective_text(r.objective, value)
    if key in ("model_s", "eval_s", "wall_s"):
        return duration(value)
    if key in ("prompt_tokens", "completion_tokens"):
        return f"{value:,}"
    return value_text(value)


def compare_table(rows: Sequence[RunSummary]) -> Table:
    """`autotrade compare`: figures down, runs across."""
    table = Table(title="Runs side by side, each whole", title_justify="left")
    table.add_column("")
    for r in rows:
        table.add_column(Text(r.name), justify="right", overflow="fold")
    for label, key in COMPARE_ROWS:
        table.add_row(*plain((label, *(compare_cell(r, key) for r in rows))))
    return table


def counted_share(count: int, total: int, unit: str = "") -> str:
    """'25% (2/8 unit)', or '—' of nothing."""
    return f"{count / total:.0%} ({count}/{total}{' ' + unit if unit else ''})" if total else "—"


def _gate(o: Overfitting | None) -> str:
    """Whether the best passes the DSR bar, in a word."""
    if o is None or o.dsr is None:
        return "—"
    return "passes" if o.dsr >= DSR_BAR else "fails"


FOOTING_ROWS: tuple[tuple[str, Callable[[Leg], str]], ...] = (
    ("model", lambda g: g.model if g.policy == "model" else f"{g.policy} policy"),
    ("endpoint", lambda g: g.endpoint),
    ("iterations counted", lambda g: f"{g.counted} of {g.committed}"),
    ("best iteration", lambda g: value_text(g.best_iteration)),
    ("best objective", lambda g: objective_text(g.objective, g.best_objective)),
    ("trials (N)", lambda g: f"{g.trials.ran} ran ({g.trials.ok} ok)"),
    ("DSR", lambda g: num(g.overfitting.dsr) if g.overfitting else "—"),
    ("DSR counting ok trials only", lambda g: num(g.overfitting.dsr_ok_only) if g.overfitting else "—"),
    (f"DSR ≥ {DSR_BAR:g}", lambda g: _gate(g.overfitting)),
    ("PBO", lambda g: share(g.overfitting.pbo) if g.overfitting else "—"),
    ("parse failures", lambda g: counted_share(g.parse_failures, g.turns, "replies")),
    ("repair rate", lambda g: counted_share(g.repaired, g.needed_repair, "repaired")),
    ("thinking", lambda g: f"{g.reasoning_chars:,} chars (≈{g.reasoning_tokens:,} tokens)"),
    ("tokens", lambda g: f"{g.tokens:,}" + (" (some estimated)" if g.usage_estimated else "")),
    ("tokens per ok strategy", lambda g: f"{g.tokens / g.ok_proposals:,.0f}" if g.ok_proposals else "—"),
)


def footing_table(legs: Sequence[Leg], footing: Footing) -> Table:
    """`autotrade compare`'s fair part: each run cut at the same footing, figures down, runs across."""
    table = Table(
        title=f"On equal footing: {footing.text}",
        title_justify="left",
        caption=(
            f"Best and statistics within the cut; DSR's N counts every distinct strategy that ran (the verdict's, "
            f"{DSR_BAR:g} the usual bar); thinking tokens estimated from characters; tokens per ok strategy: per ok "
            "proposal."
        ),
        caption_justify="left",
    )
    table.add_column("")
    for leg in legs:
        table.add_column(Text(leg.name), justify="right", overflow="fold")
    for k, (label, cell) in enumerate(FOOTING_ROWS):
        # A run that could not be cut has only who it is (rows 0 and 1) to show; its note says why.
        table.add_row(*plain((label, *(cell(g) if k < 2 or g.problem is None or g.counted else "—" for g in legs))))
    return table


# -- files ---------------------------------------------------------------------------------------------------


def plot_images(report: Report) -> dict[str, bytes]:
    """The report's PNGs by file name."""
    curves = report.curves
    members = {f"★{report.population.index(i) + 1} iter {i}": curve for i, curve in curves.members.items()}
    test = "" if curves.test_start is not None else " (test window not evaluated)"
    return {
        EQUITY_PNG: equity_plot(
            members,
            curves.buy_and_hold,
            curves.val_start,
            curves.test_start,
            f"{report.name}: population vs buy-and-hold{test}",
        ),
        OBJECTIVE_PNG: objective_plot(
            [r.iteration for r in report.rows],
            [r.objective for r in report.rows],
            report.objective,
            report.population,
            f"{report.name}: {report.objective} by iteration",
        ),
    }


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
  padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}p.dim{color:#666;margin:.2rem 0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;vertical-align:top}
th{text-align:left;background:#f4f4f4}
td.r{text-align:right;font-variant-numeric:tabular-nums}tr.member td{background:#eef8ee;font-weight:600}
p.note{color:#555;font-size:.85rem;max-width:60rem}
img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:.8rem;font-size:.8rem}
"""


def html_table(section: Section) -> str:
    """One section as an HTML table with its note."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in section.headers)
    body = []
    for k, row in enumerate(section.rows):
        member = section.highlight[k] if k < len(section.highlight) else False
        cells = "".join(
            f'<td class="r">{html.escape(c)}</td>'
            if (j < len(section.right) and section.right[j])
            else f"<td>{html.escape(c)}</td>"
            for j, c in enumerate(row)
        )
        body.append(f'<tr class="member">{cells}</tr>' if member else f"<tr>{cells}</tr>")
    note = f'<p class="note">{html.escape(section.note)}</p>' if section.note else ""
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f"<h2>{html.escape(section.title)}</h2>\n{table}{note}"


def render_html(report: Report, images: dict[str, bytes]) -> str:
    """A self-contained HTML page: header, plots (inline base64 PNG), every table, the summary."""
    lines = header_lines(report)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>autotrade report: {html.escape(report.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(lines[0])}</h1>",
        *(f'<p class="dim">{html.escape(line)}</p>' for line in lines[1:]),
    ]
    for name, png in images.items():
        alt = "equity curves" if name == EQUITY_PNG else "objective by iteration"
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f'<h2>{html.escape(alt.capitalize())}</h2><img alt="{alt}" src="data:image/png;base64,{encoded}">')
    parts.extend(html_table(section) for section in sections(report))
    parts.extend(f'<p class="note">note: {html.escape(n)}</p>' for n in report.notes)
    parts.append("<h2>Summary</h2><pre>" + html.escape("\n".join(summary_lines(report))) + "</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_files(report: Report) -> list[Path]:
    """Write the PNGs, report.html and report.json into the run directory (atomically); return their paths."""
    images = plot_images(report)
    written = []
    for name, png in images.items():
        atomic_write_bytes(report.path / name, png)
        written.append(report.path / name)
    atomic_write_text(report.path / HTML_FILE, render_html(report, images))
    written.append(report.path / HTML_FILE)
    atomic_write_json(report.path / REPORT_JSON, {"generated_at": report.generated_at, "summary": summary(report)})
    written.append(report.path / REPORT_JSON)
    return written
