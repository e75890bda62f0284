"""A sweep's curves, change points, plots and report, computed from its logs.

Per eval x metric (and, with ``group_by``, also per group beside it): the mean over samples at each
training step with a 95% percentile bootstrap CI (``emeval.stats.bootstrap.answers_ci``), and the
change point analysis of ``emeval.stats.changepoint`` with one effect-size floor per eval x metric (the
overall curve's, so a group's curve is held to the same meaningful change). Outputs beside the
logs: ``curves.csv`` (one row per step), ``changepoints.csv`` (one row per curve; ``group`` is
empty for the overall curve), ``plots/<eval>__<metric>[__<group>].png`` and ``report.md``. Plots an
earlier analysis wrote and this one does not (another ``--group-by`` or ``--metrics``) are removed;
``plots/.emeval-plots.json`` lists what the sweep wrote, so no other file in ``plots/`` is touched.
Metrics that are constant over the whole sweep (e.g. an unscorable count that stays 0) are kept
in ``curves.csv`` but neither plotted nor tested.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from jinja2 import Environment

from emeval.stats.changepoint import ALPHA, NULL_CURVES, ChangePoint, detect, effect_floor
from emeval.local.checkpoints import base_label
from emeval.sanitize.safe_output import md_text, plain_text, write_csv
from emeval.stats.bootstrap import answers_ci
from emeval.local.sweep import SWEEP_FILE, load_settings, read_checkpoints, sample_values

# Okabe & Ito (2008) colour-blind-safe palette; each mark also differs in line style.
CURVE_COLOUR, CHANGE_COLOUR, LEVEL_COLOUR, STEEPEST_COLOUR = "#0072B2", "#D55E00", "#009E73", "#E69F00"
PLOTS_WRITTEN = ".emeval-plots.json"
"""In ``plots/``: the plot files the last analysis wrote (what a rerun may remove)."""


@dataclass
class Curve:
    eval: str
    metric: str
    group: str
    points: pd.DataFrame
    """step, checkpoint, mean, ci_low, ci_high, n"""
    change: ChangePoint
    plot: Path | None = None

    @property
    def title(self) -> str:
        return f"{self.eval}: {self.metric}" + (f" [{self.group}]" if self.group else "")


def curve_points(values: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (step, checkpoint), part in values.groupby(["step", "checkpoint"], sort=True):
        mean, low, high = answers_ci(part["value"].tolist())
        rows.append({"step": step, "checkpoint": checkpoint, "mean": mean, "ci_low": low, "ci_high": high, "n": len(part)})
    return pd.DataFrame(rows, columns=["step", "checkpoint", "mean", "ci_low", "ci_high", "n"])


def build_curves(frame: pd.DataFrame, group_by: str | None = None, metrics: list[str] | None = None) -> list[Curve]:
    """One curve per eval x metric, and with ``group_by`` one per group beside it; ``metrics`` restricts which are kept."""
    if frame.empty:
        return []
    if group_by and group_by not in frame.columns:
        raise ValueError(f"--group-by {group_by!r}: not a column of the sweep's samples ({', '.join(frame.columns)})")
    if metrics:
        unknown = sorted(set(metrics) - set(frame["metric"]))
        if unknown:
            known = ", ".join(sorted(set(frame["metric"])))
            raise ValueError(f"--metrics: {', '.join(unknown)} not in the sweep's scores ({known})")
        frame = frame[frame["metric"].isin(metrics)]
    curves = []
    for (eval_name, metric), part in frame.groupby(["eval", "metric"], sort=True):
        floor = effect_floor(_by_step(part))
        groups = [("", part)]
        if group_by:
            labels = part[group_by].fillna("").astype(str)
            groups += [(str(label), g) for label, g in part.groupby(labels, sort=True)]
        for group, values in groups:
            curves.append(Curve(eval_name, metric, group, curve_points(values), detect(_by_step(values), floor=floor)))
    return curves


def _by_step(values: pd.DataFrame) -> dict[float, dict[str, float]]:
    """step -> sample id -> value (ids pair the samples across steps)."""
    return {float(step): dict(zip(p["sample"], p["value"], strict=True)) for step, p in values.groupby("step")}


def is_constant(curve: Curve) -> bool:
    return curve.points["mean"].nunique() <= 1 and (curve.points["ci_low"] == curve.points["ci_high"]).all()


def plot_curve(curve: Curve, path: Path) -> Path:
    """The curve with its CI band; change point, its CI, the two levels and the steepest step marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, c = curve.points, curve.change
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.fill_between(p["step"], p["ci_low"], p["ci_high"], color=CURVE_COLOUR, alpha=0.18, linewidth=0, label="95% CI")
    ax.plot(p["step"], p["mean"], color=CURVE_COLOUR, marker="o", linestyle="-", label=f"mean {curve.metric}")
    if c.steepest_from is not None:
        seg = p[p["step"].isin([c.steepest_from, c.steepest_to])]
        ax.plot(seg["step"], seg["mean"], color=STEEPEST_COLOUR, linewidth=3.5, linestyle="-", alpha=0.9,
                label=f"steepest: {c.steepest_from:g} to {c.steepest_to:g}")
    if c.detected and c.step is not None:
        if c.step_ci:
            span = (min(c.step_ci[0], c.last_before), c.step_ci[1])
            ax.axvspan(*span, color=CHANGE_COLOUR, alpha=0.10, label="change point 95% CI")
        ax.axvline(c.step, color=CHANGE_COLOUR, linestyle="--", linewidth=1.8, label=f"change point: step {c.step:g}")
        first, last = p["step"].min(), p["step"].max()
        ax.hlines([c.before, c.after], [first, c.step], [c.last_before, last], colors=LEVEL_COLOUR, linestyles=":",
                  linewidth=2, label="levels before / after")
    else:
        ax.text(0.02, 0.95, "no transition", transform=ax.transAxes, va="top", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "#999999"})
    ax.set_xlabel("training step")
    ax.set_ylabel(curve.metric + (" (mean over samples)" if len(curve.metric) < 24 else ""))
    ax.set_title(curve.title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


REPORT = """# Checkpoint sweep

- base: `{{ base }}`
- checkpoints: {% for spec in settings.checkpoints %}`{{ spec }}` {% endfor %}
- evals: {{ settings.evals | join(", ") }}; seed {{ settings.seed }}
{%- if settings.judge %}; judge `{{ settings.judge }}`{% endif %}
{%- if settings.task_args %}; task args {% for k, v in settings.task_args.items() %}`{{ k }}={{ v }}` {% endfor %}{% endif %}

| step | checkpoint | kind | where |
|---:|---|---|---|
{% for c in checkpoints %}| {{ c.step }} | {{ c.label | md }} | {{ c.kind | md }} | `{{ c.ref }}` |
{% endfor %}
A transition is reported when (1) the best two-level fit of the step means beats a constant by more
than on {{ "%g" % (100 * (1 - alpha)) }}% of {{ null_curves }} simulated curves of the same length with no change
(null p <= {{ alpha }}: the false-positive rate on no-change curves is {{ "%g" % (100 * alpha) }}% or less,
whatever their checkpoint-to-checkpoint noise; 0/1 indicators are also held to their binomial sampling
noise at each step's n),
(2) the change is at least the effect-size floor (5 pp on probabilities and rates, 5 points on 0-100 scores,
0.2 within-step SD on unbounded metrics; each curve states its own), and (3) the bootstrap 95% CI of the level
difference excludes 0. Otherwise it says "no transition" and why (see `emeval.stats.changepoint` and
docs/local_models_and_sweeps.md for the measured false-positive and detection rates).
{% for curve in curves %}
## {{ curve.title | md }}

{{ curve.change.summary }}.
{%- if curve.change.steepest_slope is not none %}
{% set c = curve.change %}Steepest change: step {{ "%g" % c.steepest_from }} to {{ "%g" % c.steepest_to }}
{{- " (%+.3g per step)." % c.steepest_slope }}
{%- endif %}
{% if curve.plot %}
![{{ curve.title | md }}]({{ curve.plot }})
{% endif %}
| step | checkpoint | mean | 95% CI | n |
|---:|---|---:|---|---:|
{% for p in curve.points.itertuples() -%}
| {{ p.step }} | {{ p.checkpoint | md }} | {{ "%.4g" % p.mean }} | [{{ "%.4g" % p.ci_low }}, {{ "%.4g" % p.ci_high }}] | {{ p.n }} |
{% endfor %}{% endfor %}
{% if constant %}
Constant over the sweep (not plotted): {{ constant | join(", ") }}.
{% endif %}"""


def analyse(out: Path, *, group_by: str | None = None, metrics: list[str] | None = None) -> list[Curve]:
    """Compute and write the sweep's curves, change points, plots and report; return the analysed curves."""
    if not (out / SWEEP_FILE).is_file():
        raise FileNotFoundError(f"{out}: no {SWEEP_FILE}; run `emeval sweep` first")
    curves = build_curves(sample_values(out), group_by, metrics)
    constant = [c.title for c in curves if is_constant(c)]
    analysed = [c for c in curves if not is_constant(c)]
    for curve in analysed:
        name = f"{curve.eval}__{curve.metric}" + (f"__{curve.group}" if curve.group else "")
        curve.plot = plot_curve(curve, out / "plots" / f"{_slug(name)}.png").relative_to(out)
    _remove_stale_plots(out / "plots", {c.plot.name for c in analysed if c.plot})
    table = []
    for curve in curves:
        table.extend({"eval": curve.eval, "metric": curve.metric, "group": curve.group, **row}
                     for row in curve.points.to_dict("records"))
    write_csv(pd.DataFrame(table), out / "curves.csv")
    write_csv(pd.DataFrame(
        [{"eval": c.eval, "metric": c.metric, "group": c.group, **_flat(c.change)} for c in analysed]
    ), out / "changepoints.csv")
    settings = load_settings(out)
    env = Environment(autoescape=False, keep_trailing_newline=True, finalize=plain_text)
    env.filters["md"] = md_text
    report = env.from_string(REPORT).render(
        settings=settings, base=base_label(settings.base), checkpoints=read_checkpoints(out), curves=analysed,
        constant=constant,
        alpha=ALPHA, null_curves=NULL_CURVES,
    )
    (out / "report.md").write_text(report)
    return analysed


def _remove_stale_plots(folder: Path, written: set[str]) -> None:
    """Delete the plots an earlier analysis wrote that this one did not, and record this one's."""
    record = folder / PLOTS_WRITTEN
    try:
        earlier = set(json.loads(record.read_text())) if record.is_file() else set()
    except ValueError:
        earlier = set()
    for name in earlier - written:
        if Path(name).name == name and name.endswith(".png"):  # a bare file name the sweep wrote, nothing else
            (folder / name).unlink(missing_ok=True)
    if written or earlier:
        folder.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(sorted(written), indent=1) + "\n")


def _flat(change: ChangePoint) -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in change.as_dict().items():
        if key.endswith("_ci"):
            flat[f"{key}_low"], flat[f"{key}_high"] = value if value else (None, None)
        elif key == "notes":
            flat[key] = "; ".join(value)
        else:
            flat[key] = value
    return flat
