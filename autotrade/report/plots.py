"""The report's plots as PNG bytes: equity curves across the windows, and the objective by iteration.

matplotlib is imported inside each function (it takes a moment), and figures are drawn on an explicit
Agg canvas: no pyplot global state, no display needed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DPI = 110


def _png(figure: Figure) -> bytes:
    """Render a figure to PNG bytes on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def chain_windows(curves: Sequence[pd.Series], cash: float) -> pd.Series:
    """Growth of 1 across consecutive windows, each of which starts from `cash`: window growths chained end to end."""
    parts, level = [], 1.0
    for equity in curves:
        growth = equity / cash * level
        parts.append(growth)
        level = float(growth.iloc[-1])
    return pd.concat(parts) if parts else pd.Series(dtype=float)


def equity_plot(
    members: Mapping[str, pd.Series],
    buy_and_hold: pd.Series,
    val_start: pd.Timestamp,
    test_start: pd.Timestamp | None,
    title: str,
) -> bytes:
    """Growth of 1 for each labelled curve and buy-and-hold, log scale, with the split dates marked (test shaded)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(10, 5))
    axes = figure.add_subplot()
    axes.plot(
        buy_and_hold.index, buy_and_hold.to_numpy(), color="0.45", linewidth=1.2, linestyle="--", label="buy and hold"
    )
    for label, curve in members.items():
        axes.plot(curve.index, curve.to_numpy(), linewidth=1.3, label=label)
    axes.axvline(val_start, color="tab:orange", linewidth=1.0)
    axes.text(
        val_start, 1.0, " validation", transform=axes.get_xaxis_transform(), va="top", fontsize=8, color="tab:orange"
    )
    if test_start is not None:
        end = buy_and_hold.index[-1]
        axes.axvspan(test_start, end, color="tab:red", alpha=0.07)
        axes.axvline(test_start, color="tab:red", linewidth=1.0)
        axes.text(
            test_start,
            1.0,
            " test (held out)",
            transform=axes.get_xaxis_transform(),
            va="top",
            fontsize=8,
            color="tab:red",
        )
    values = pd.concat([buy_and_hold, *members.values()])
    if (values > 0).all() and values.max() / values.min() > 4:
        axes.set_yscale("log")  # only for wide ranges: log ticks on a narrow range read badly
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes.set_ylabel("growth of 1 (each window restarts from cash)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


def objective_plot(
    iterations: Sequence[int],
    values: Sequence[float | None],
    objective: str,
    population: Sequence[int],
    title: str,
) -> bytes:
    """The objective of each iteration (failures as red marks at the bottom) with the running best as a step line."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    axes = figure.add_subplot()
    finite = [v is not None and math.isfinite(v) for v in values]
    ok = [(i, float(v)) for i, v, good in zip(iterations, values, finite, strict=True) if good]
    failed = [i for i, good in zip(iterations, finite, strict=True) if not good]
    if ok:
        axes.scatter([i for i, _ in ok], [v for _, v in ok], s=22, color="tab:blue", label="ok", zorder=3)
        best, running = -math.inf, []
        for v, good in zip(values, finite, strict=True):
            best = max(best, float(v)) if good else best
            running.append(best if math.isfinite(best) else math.nan)
        axes.step(list(iterations), running, where="post", color="tab:green", linewidth=1.5, label="running best")
        members = [(i, v) for i, v in ok if i in set(population)]
        if members:
            axes.scatter(
                [i for i, _ in members],
                [v for _, v in members],
                s=90,
                facecolors="none",
                edgecolors="tab:green",
                linewidths=1.5,
                label="population",
                zorder=4,
            )
    if failed:
        axes.scatter(
            failed,
            [0.0] * len(failed),
            marker="x",
            color="tab:red",
            transform=axes.get_xaxis_transform(),
            clip_on=False,
            label="failed",
            zorder=3,
        )
    axes.set_xlabel("iteration")
    axes.set_ylabel(objective)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if iterations:
        axes.set_xlim(min(iterations) - 0.5, max(iterations) + 0.5)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize=8)
    return _png(figure)
