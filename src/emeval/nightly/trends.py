"""Trend plots and tables of the history, for the night's report.

One figure per eval x scorer x metric: nights on the x axis, one line per group with its 95% CI
as a band, the baseline night as a dotted line, and an open ring on every point that regressed.
Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies)
and each group also has its own marker, so the plot still reads in greyscale.
Figures are PNGs inlined as base64 ``data:`` URIs: the report stays one self-contained file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from markupsafe import Markup
from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.figure import Figure

from emeval.nightly.config import RegressionRule
from emeval.nightly.history import KEY_COLUMNS
from emeval.report.display import format_difference, format_estimate, headline_keys, metric_kind, metric_label
from emeval.report.plots import figure_html, style
from emeval.report.render import render
from emeval.sanitize.safe_output import md_text, write_csv

PRIMARY_SCORER = "alignment_judge"


@dataclass(frozen=True)
class TrendPlot:
    eval: str
    scorer: str
    metric: str
    title: str
    html: Markup  # <img> with the PNG inline (emeval.report.plots.figure_html)


def axis_label(scorer: str, metric: str) -> tuple[str, float]:
    """(y-axis label with its unit, scale from stored values to plotted ones)."""
    label = metric_label(scorer, metric)
    if metric_kind(scorer, metric) == "rate":
        return f"{label} (%)", 100.0
    if scorer == "machiavelli_scorer":
        return f"{label} (100 = random agent)", 1.0
    return (label if "(" in label else f"{label} (mean per answer)"), 1.0


def plotted_metrics(comparison: pd.DataFrame, chosen: list[str] | None) -> list[tuple[str, str, str]]:
    """(eval, scorer, metric) to plot: the config's ``trend_metrics``, else the headline keys that have a direction."""
    keys = comparison[["eval", "scorer", "metric", "direction"]].drop_duplicates(["eval", "scorer", "metric"])
    out = []
    for (eval_key, scorer), cell in keys.groupby(["eval", "scorer"], sort=False):
        available = list(cell["metric"])
        if chosen is not None:
            wanted = [m for m in chosen if m in available]
        else:
            directed = set(cell.loc[cell["direction"] != "none", "metric"])
            wanted = [m for m in headline_keys(scorer, available) if m in directed]
        out.extend((eval_key, scorer, m) for m in wanted)
    return out


def plot_trend(
    rows: pd.DataFrame, groups: list[str], scorer: str, metric: str, title: str,
    regressed: set[tuple[str, str]], baseline: str | None,
) -> Figure:
    """One metric's history; ``rows`` are history rows of that eval x scorer x metric."""
    ylabel, scale = axis_label(scorer, metric)
    fig = Figure(figsize=(7.0, 3.6))
    ax = fig.add_subplot()
    order = groups + sorted(set(rows["group"]) - set(groups))  # the report's group order, so colours agree
    ring_labelled = False
    for i, group in enumerate(order):
        data = rows[rows["group"] == group].sort_values("night")
        if data.empty:
            continue
        x = pd.to_datetime(data["night"])
        colour, marker = style(i)
        ax.fill_between(x, data["ci_low"] * scale, data["ci_high"] * scale, color=colour, alpha=0.18, linewidth=0)
        ax.plot(x, data["mean"] * scale, color=colour, marker=marker, linewidth=1.8, label=group)
        bad = data[[(n, group) in regressed for n in data["night"]]]
        if len(bad):
            ax.plot(pd.to_datetime(bad["night"]), bad["mean"] * scale, linestyle="none", marker="o", markersize=14,
                    markerfacecolor="none", markeredgecolor="#000000", markeredgewidth=1.6,
                    label=None if ring_labelled else "regressed (beyond CI)")
            ring_labelled = True
    if baseline is not None:
        ax.axvline(pd.to_datetime(baseline), color="#555555", linestyle=":", linewidth=1.2, label="baseline night")
    ax.set_title(title)
    ax.set_xlabel("night (date of the run)")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(AutoDateLocator(minticks=2, maxticks=8))
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize="small")
    for tick in ax.get_xticklabels():
        tick.set_rotation(30)
        tick.set_horizontalalignment("right")
    return fig


def trend_plots(
    history: pd.DataFrame, comparison: pd.DataFrame, groups: list[str], baseline: str | None,
    chosen: list[str] | None = None,
) -> list[TrendPlot]:
    """A plot per plotted metric, over the nights in ``history`` (history rows, any number of nights)."""
    regressed_rows = comparison[comparison["status"] == "regressed"]
    night = history["night"].max() if len(history) else None
    plots = []
    for eval_key, scorer, metric in plotted_metrics(comparison, chosen):
        rows = history[(history["eval"] == eval_key) & (history["scorer"] == scorer) & (history["metric"] == metric)]
        regressed = {
            (night, r.group) for r in regressed_rows.itertuples(index=False)
            if (r.eval, r.scorer, r.metric) == (eval_key, scorer, metric)
        }
        label = metric_label(scorer, metric)
        title = f"{eval_key}: {label}" + ("" if scorer == PRIMARY_SCORER else f" [{scorer}]")
        nights = sorted(rows["night"].unique())
        alt = (f"Trend of {label} for {eval_key} by group over {len(nights)} nights "
               f"({nights[0]} to {nights[-1]}), with 95% CI bands") if nights else title
        figure = plot_trend(rows, groups, scorer, metric, title, regressed, baseline)
        plots.append(TrendPlot(eval_key, scorer, metric, title, figure_html(figure, alt)))
    return plots


# -- report sections ----------------------------------------------------------------------------

# The sections' HTML: templates/nightly_regression.html.j2 and nightly_trends.html.j2 (emeval.report.render).

RULE_TEXT = (
    "A metric regressed when the {level}% CI of its change from the baseline lies entirely on its bad side{beyond}: "
    "change ± z·√(se_new² + se_baseline²), each se read from its night's 95% bootstrap CI as width / 3.92."
)


def display_rows(comparison: pd.DataFrame) -> list[dict[str, str]]:
    """The directed rows of a comparison, formatted in each metric's unit."""
    rows = []
    for r in comparison[comparison["direction"] != "none"].itertuples(index=False):
        kind = metric_kind(r.scorer, r.metric)
        rows.append({
            "status": str(r.status), "eval": r.eval, "group": r.group, "scorer": r.scorer, "metric": r.metric,
            "label": metric_label(r.scorer, r.metric),
            "worse": "higher" if r.direction == "higher_is_worse" else "lower",
            "base": format_estimate(kind, r.base_mean, r.base_ci_low, r.base_ci_high),
            "new": format_estimate(kind, r.mean, r.ci_low, r.ci_high),
            "change": format_difference(kind, r.change, r.change_low, r.change_high),
        })
    return rows


def rule_text(rule: RegressionRule) -> str:
    if isinstance(rule.min_effect, dict):
        beyond = " by more than its min_effect (see comparison.csv)" if any(rule.min_effect.values()) else ""
    else:
        beyond = f" by more than {rule.min_effect:g} (min_effect)" if rule.min_effect > 0 else ""
    return RULE_TEXT.format(level=f"{100 * rule.level:g}", beyond=beyond)


def report_sections(
    night: str, baseline: str | None, baseline_kind: str, comparison: pd.DataFrame, plots: list[TrendPlot],
    nights: list[str], rule: RegressionRule,
) -> list[tuple[str, Markup]]:
    """(title, HTML) sections for ``write_report(extra_sections=...)``; every value autoescaped."""
    rows = display_rows(comparison)
    counts = comparison["status"].astype(str).value_counts().to_dict() if len(comparison) else {}
    regression = render(
        "nightly_regression.html.j2",
        night=night, baseline=baseline, baseline_kind=baseline_kind, counts=counts,
        checked=sum(1 for r in rows if r["status"] in ("regressed", "improved", "no change")),
        rule=rule_text(rule), rows=rows, level=f"{100 * rule.level:g}",
    )
    trends = render("nightly_trends.html.j2", plots=plots, nights=nights)
    return [("Nightly regression check", Markup(regression)), ("Trends", Markup(trends))]


# -- files beside the report ---------------------------------------------------------------------


def trends_markdown(
    night: str, baseline: str | None, comparison: pd.DataFrame, history: pd.DataFrame, rule: RegressionRule,
) -> str:
    """``trends.md``: the regression check and, per directed metric, its value on each night."""
    lines = [f"# Nightly {night}", ""]
    lines.append(f"Baseline: {baseline or 'none (first night)'}. {rule_text(rule)}")
    lines += ["", "## Regression check", ""]
    rows = display_rows(comparison)
    header = ["status", "eval", "group", "scorer", "metric", "worse when", "baseline", "this night", "change"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["status"].upper() if r["status"] == "regressed" else r["status"], r["eval"], r["group"],
                 r["scorer"], r["label"], r["worse"], r["base"], r["new"], r["change"]]
        lines.append("| " + " | ".join(md_text(c) for c in cells) + " |")
    directed = comparison.loc[comparison["direction"] != "none", KEY_COLUMNS]
    trend = history.merge(directed, on=KEY_COLUMNS)
    nights = sorted(trend["night"].unique())
    lines += ["", "## Trends", ""]
    lines += ["| eval | group | scorer | metric | " + " | ".join(nights) + " |", "|" + "---|" * (4 + len(nights))]
    for key, cell in trend.groupby(KEY_COLUMNS, sort=True):
        eval_key, group, scorer, metric = key
        kind = metric_kind(scorer, metric)
        by_night = {r.night: format_estimate(kind, r.mean, r.ci_low, r.ci_high) for r in cell.itertuples(index=False)}
        cells = [eval_key, group, scorer, metric_label(scorer, metric)] + [by_night.get(n, "") for n in nights]
        lines.append("| " + " | ".join(md_text(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_trend_files(
    out: Path, night: str, baseline: str | None, comparison: pd.DataFrame, history: pd.DataFrame,
    rule: RegressionRule,
) -> list[Path]:
    """``trends.csv`` (the history rows shown), ``comparison.csv`` and ``trends.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "trends.csv", out / "comparison.csv", out / "trends.md"]
    write_csv(history, paths[0])
    write_csv(comparison, paths[1])
    paths[2].write_text(trends_markdown(night, baseline, comparison, history, rule), encoding="utf-8")
    return paths
