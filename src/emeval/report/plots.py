"""Report figures with matplotlib, embedded as inline PNG so the HTML works offline.

Why these choices: the Okabe-Ito palette stays distinguishable under the common colour-vision
deficiencies, and each group also gets its own marker shape, so nothing depends on colour alone.
Figures are built on ``matplotlib.figure.Figure`` (no pyplot global state), so building a report
inside another program or thread touches nothing else.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib.figure import Figure

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
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
    ax.axvspan(coherent_above, 101, ymin=0, ymax=(aligned_below + 1) / 102, color="#D55E00", alpha=0.08, lw=0)
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
