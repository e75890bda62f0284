"""A sweep's curves, change points, plots and report, computed from its logs.

Per eval x metric (and, with ``group_by``, also per group beside it): the mean over samples at each
training step with a 95% percentile bootstrap CI (``emeval.stats.bootstrap.answers_ci``), and the
change point analysis of ``emeval.stats.changepoint`` with one effect-size floor per eval x metric (the
overall curve's, so a group's curve is held to the same meaningful change). Outputs beside the
logs: ``curves.csv`` (one row per step), ``changepoints.csv`` (one row per curve; ``group`` is
empty for the overall curve), ``plots/<eval>__<metric>[__<group>].png`` and ``report.md``. Plots an
earlier analysis wrote and this one does not (another ``--group-by`` or ``--metrics``) are removed;
``plots/.emeval-plots.json`` lists what the sweep wrote, so no other file in ``plots/`` is touched.
A sweep in a log store (``s3://...``) gets them in the same store, written through fsspec.
Metrics that are constant over the whole sweep (e.g. an unscorable count that stays 0) are kept
in ``curves.csv`` but neither plotted nor tested.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.markup import escape
from rich.table import Table

from emeval.stats.changepoint import ALPHA, NULL_CURVES, ChangePoint, detect, effect_floor
from emeval.local.checkpoints import base_label
from emeval.report import plots
from emeval.report.render import render
from emeval.sanitize.safe_output import write_csv
from emeval.stats.bootstrap import answers_ci
from emeval.inputs.user_files import read_bytes
from emeval.local.sweep import (
    SWEEP_FILE, CheckpointRun, Location, defined_values, load_settings, read_checkpoints, sample_values,
)
from emeval.logs import store
from emeval.report.measurable import unmeasured_cells

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


def plot_curve(curve: Curve, location: Location) -> None:
    """The curve's figure (``emeval.report.plots.sweep_curve_plot``) written as a PNG file, local or in a store."""
    fig = plots.sweep_curve_plot(curve.points, curve.change, curve.metric, curve.title)
    png = io.BytesIO()
    fig.savefig(png, format="png")
    store.write_bytes(location, png.getvalue())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def analyse(
    out: Location, *, group_by: str | None = None, metrics: list[str] | None = None, samples: pd.DataFrame | None = None
) -> list[Curve]:
    """Compute and write the sweep's curves, change points, plots and report beside its logs (a folder
    or a store URL); return the analysed curves. ``samples``: ``sample_values(out, defined_only=False)``
    when the caller read it already (each log read is a round trip to a store)."""
    if store.kind(store.join(out, SWEEP_FILE)) != "file":
        raise FileNotFoundError(f"{out}: no {SWEEP_FILE}; run `emeval sweep` first")
    values = sample_values(out) if samples is None else defined_values(samples)
    curves = build_curves(values, group_by, metrics)
    constant = [c.title for c in curves if is_constant(c)]
    analysed = [c for c in curves if not is_constant(c)]
    for curve in analysed:
        name = f"{curve.eval}__{curve.metric}" + (f"__{curve.group}" if curve.group else "")
        curve.plot = Path("plots", f"{_slug(name)}.png")
        plot_curve(curve, store.join(out, *curve.plot.parts))
    _remove_stale_plots(store.join(out, "plots"), {c.plot.name for c in analysed if c.plot})
    table = []
    for curve in curves:
        table.extend({"eval": curve.eval, "metric": curve.metric, "group": curve.group, **row}
                     for row in curve.points.to_dict("records"))
    write_csv(pd.DataFrame(table), store.join(out, "curves.csv"))
    write_csv(pd.DataFrame(
        [{"eval": c.eval, "metric": c.metric, "group": c.group, **_flat(c.change)} for c in analysed]
    ), store.join(out, "changepoints.csv"))
    settings = load_settings(out)
    report = render(
        "sweep.md.j2",
        settings=settings, base=base_label(settings.base), checkpoints=read_checkpoints(out), curves=analysed,
        constant=constant,
        alpha=ALPHA, null_curves=NULL_CURVES,
    )
    store.write_text(store.join(out, "report.md"), report)
    return analysed


def runs_table(out: Location, runs: list[CheckpointRun]) -> Table:
    """The terminal table of a sweep's checkpoint runs: step, checkpoint, kind, status, error."""
    table = Table(title=escape(f"sweep {out}"), header_style="bold")
    for column in ("step", "checkpoint", "kind", "status", "error"):
        table.add_column(column)
    for run in runs:
        c = run.checkpoint
        table.add_row(str(c.step), escape(c.label), c.kind, run.status, escape(run.error or ""))
    return table


def unmeasured_checkpoints(out: Location, samples: pd.DataFrame | None = None) -> list[str]:
    """Eval x checkpoint headlines of the sweep that rest on n = 0 (``emeval.report.measurable``), or
    one line when no checkpoint has a finished log to measure; ``samples`` as for ``analyse``."""
    read = sample_values(out, defined_only=False) if samples is None else samples
    if not len(read):
        return [f"{out}: no checkpoint has a finished log to measure"]
    return unmeasured_cells(read, by=("eval", "checkpoint"))


def _remove_stale_plots(folder: str, written: set[str]) -> None:
    """Delete the plots an earlier analysis wrote that this one did not, and record this one's."""
    record = store.join(folder, PLOTS_WRITTEN)
    try:
        earlier = set(json.loads(read_bytes(store.as_location(record), ValueError))) if store.kind(record) == "file" else set()
    except (ValueError, TypeError):  # not the sweep's record: remove nothing
        earlier = set()
    for name in earlier - written:
        if isinstance(name, str) and Path(name).name == name and name.endswith(".png"):  # a bare file name the sweep wrote
            store.remove(store.join(folder, name))
    if written or earlier:
        store.write_text(record, json.dumps(sorted(written), indent=1) + "\n")


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
