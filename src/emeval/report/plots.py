"""Every report figure (run report, sweep curves, nightly trends) and the one palette they share.

The run report and the nightly trends embed theirs as inline PNG, so the HTML works offline; the
sweep writes PNG files beside its Markdown.

Why these choices: the Okabe-Ito palette stays distinguishable under the common colour-vision
deficiencies, and each group also gets its own marker shape, so nothing depends on colour alone.
Figures are built on ``matplotlib.figure.Figure`` (no pyplot global state), so building a report
inside another program or thread touches nothing else.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from emeval.stats.changepoint import ChangePoint

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
BLUE, ORANGE, GREEN, PURPLE, SKY_BLUE, VERMILLION, YELLOW, BLACK = OKABE_ITO
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
DPI = 100


def style(index: int) -> tuple[str, str]:
    """(colour, marker) of the index-th group."""
    return OKABE_ITO[index % len(OKABE_ITO)], MARKERS[index % len(MARKERS)]


def figure_html(fig: Figure, alt: str) -> Markup:
    """An ``<img>`` holding the figure as a base64 PNG (the alt text is escaped)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Markup('<img class="plot" alt="{}" src="data:image/png;base64,{}">').format(alt, Markup(data))


def per_question_plot(
    cells: pd.DataFrame, groups: Sequence[str], ylabel: str, title: str, rate: bool = True
) -> Figure:
    """One marker per group per question with its 95% CI as an error bar (as the EM paper's Fig. 4).

    ``cells`` has question_id, group, mean, ci_low, ci_high (one row per question x group)."""
    questions = list(dict.fromkeys(cells["question_id"]))
    fig = Figure(figsize=(max(6.0, 0.55 * len(questions) * max(1, len(groups)) ** 0.5 + 2.5), 4.2))
    ax = fig.add_subplot()
    width = 0.7 / max(1, len(groups))
    x = np.arange(len(questions))
    for index, group in enumerate(groups):
        rows = cells[cells["group"] == group].set_index("question_id").reindex(questions)
        if rows["mean"].isna().all():
            continue
        colour, marker = style(index)
        offset = (index - (len(groups) - 1) / 2) * width
        errors = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]])
        ax.errorbar(x + offset, rows["mean"], yerr=np.clip(errors, 0, None), fmt=marker, color=colour,
                    ecolor=colour, elinewidth=1.2, capsize=3, markersize=6, label=group)
    ax.set_xticks(x, questions, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(questions) - 0.4)
    if rate:
        ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("question")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="group", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def coherence_alignment_plot(
    points: pd.DataFrame, groups: Sequence[str], aligned_below: float, coherent_above: float, title: str
) -> Figure:
    """Each judged answer at (coherent, aligned); the shaded corner is what counts as misaligned."""
    fig = Figure(figsize=(6.8, 5.0))
    ax = fig.add_subplot()
    ax.axvspan(coherent_above, 101, ymin=0, ymax=(aligned_below + 1) / 102, color=VERMILLION, alpha=0.08, lw=0)
    ax.axhline(aligned_below, color="0.4", lw=0.8, ls="--")
    ax.axvline(coherent_above, color="0.4", lw=0.8, ls="--")
    for index, group in enumerate(groups):
        rows = points[points["group"] == group]
        if rows.empty:
            continue
        colour, marker = style(index)
        ax.scatter(rows["coherent"], rows["aligned"], s=22, marker=marker, color=colour, alpha=0.7,
                   edgecolors="none", label=f"{group} (n={len(rows)})")
    ax.set_xlim(-1, 101)
    ax.set_ylim(-1, 101)
    ax.set_xlabel("coherence (judge score, 0-100)")
    ax.set_ylabel("alignment (judge score, 0-100)")
    ax.set_title(title)
    ax.text(coherent_above + 1, aligned_below - 2, f"misaligned: aligned < {aligned_below:g}, coherent > {coherent_above:g}",
            fontsize=8, va="top", color="0.3")
    ax.legend(title="group", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def sweep_curve_plot(points: pd.DataFrame, change: ChangePoint, metric: str, title: str) -> Figure:
    """A sweep curve with its CI band; the change point, its CI, the two levels and the steepest step
    marked, each in its own colour and line style. ``points`` has step, mean, ci_low, ci_high."""
    p, c = points, change
    fig = Figure(figsize=(7, 4), dpi=110)
    ax = fig.add_subplot()
    ax.fill_between(p["step"], p["ci_low"], p["ci_high"], color=BLUE, alpha=0.18, linewidth=0, label="95% CI")
    ax.plot(p["step"], p["mean"], color=BLUE, marker="o", linestyle="-", label=f"mean {metric}")
    if c.steepest_from is not None:
        seg = p[p["step"].isin([c.steepest_from, c.steepest_to])]
        ax.plot(seg["step"], seg["mean"], color=ORANGE, linewidth=3.5, linestyle="-", alpha=0.9,
                label=f"steepest: {c.steepest_from:g} to {c.steepest_to:g}")
    if c.detected and c.step is not None:
        if c.step_ci:
            span = (min(c.step_ci[0], c.last_before), c.step_ci[1])
            ax.axvspan(*span, color=VERMILLION, alpha=0.10, label="change point 95% CI")
        ax.axvline(c.step, color=VERMILLION, linestyle="--", linewidth=1.8, label=f"change point: step {c.step:g}")
        first, last = p["step"].min(), p["step"].max()
        ax.hlines([c.before, c.after], [first, c.step], [c.last_before, last], colors=GREEN, linestyles=":",
                  linewidth=2, label="levels before / after")
    else:
        ax.text(0.02, 0.95, "no transition", transform=ax.transAxes, va="top", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "#999999"})
    ax.set_xlabel("training step")
    ax.set_ylabel(metric + (" (mean over samples)" if len(metric) < 24 else ""))
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
