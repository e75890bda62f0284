"""A terminal summary of a finished eval, read from its Inspect log (the only record of a run)."""

from __future__ import annotations

import math
from pathlib import Path

from inspect_ai.log import EvalLog
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emeval.logs.read import header_metrics, read_log, unfinished_reason
from emeval.sanitize.safe_output import plain_text
from emeval.report.terminal import make_console


def headline(log: EvalLog) -> dict[str, float]:
    """The ``em_summary`` metrics of a log as a flat dict (empty if the run produced none)."""
    values: dict[str, float] = {}
    for _, metrics in header_metrics(log):
        for name, value in metrics.items():
            values.setdefault(name, value)
    return values


COUNTS = [
    ("answers", "n_answers"),
    ("judged", "n_judged"),
    ("coherent", "n_coherent"),
    ("misaligned", "n_misaligned"),
    ("CODE (kept apart)", "n_code"),
    ("REFUSAL (kept apart)", "n_refusal"),
    ("unscorable (kept apart)", "n_unscorable"),
    ("  of which invalid judge output", "n_invalid_judge_output"),
    ("extraction failed (kept apart)", "n_extraction_failed"),
]
"""The count rows of the headline table (label, metric name)."""


def rate_cell(values: dict[str, float], name: str, percent: bool = True) -> str:
    """A rate with its CI, or "n/a (n=0)" when the log has none (``metrics.with_ci`` leaves out a
    statistic with nothing to average; older logs may hold NaN or infinity there)."""
    if name not in values or not math.isfinite(values[name]):
        return "n/a (n=0)"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    low, high = values.get(f"{name}_ci_low"), values.get(f"{name}_ci_high")
    text = f"{values[name] * scale:.1f}{unit}"
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f"  [{low * scale:.1f}, {high * scale:.1f}]"
    return text


def summary_table(log: EvalLog) -> Table:
    values = headline(log)
    model = log.eval.model
    grader = (log.eval.model_roles or {}).get("grader")
    title = escape(plain_text(f"{log.eval.task} — {model}" + (f" (judge: {grader.model})" if grader else "")))
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    # the log's own metrics (emeval.stats.metrics): one run's answers resampled; docs/reports.md says when
    # to cite the questions+answers or the paper's CI over models instead (emeval report)
    table.add_column("value [95% CI over answers]", justify="right")
    table.add_row("misaligned rate", rate_cell(values, "misaligned_rate"))
    table.add_row("coherent rate", rate_cell(values, "coherent_rate"))
    table.add_row("mean aligned (0-100)", rate_cell(values, "mean_aligned", percent=False))
    for label, key in COUNTS:
        if key in values:
            table.add_row(label, f"{values[key]:.0f}")
    return table


def unmeasured_headlines(log: EvalLog) -> list[str]:
    """One line per judge scorer whose misaligned rate rests on n = 0 (``emeval.report.measurable``), or one
    line when the log holds no free-form headline at all (this table would be all "n/a")."""
    lines = []
    where = plain_text(f"{log.eval.task} — {log.eval.model}")
    found = False
    for scorer, values in header_metrics(log):
        if "n_answers" not in values:  # not an em_summary
            continue
        found = True
        rate = values.get("misaligned_rate")
        if rate is None or not math.isfinite(rate):
            counts = ", ".join(f"{values[key]:.0f} {label.strip().split(' (')[0]}" for label, key in COUNTS[1:]
                               if key in values and (values[key] or key in ("n_judged", "n_coherent")))
            lines.append(f"{where}: {scorer} misaligned rate rests on n = 0 "
                         f"({values['n_answers']:.0f} answer(s): {counts})")
    if not found:
        lines.append(f"{where}: no free-form headline in this log (no em_summary metrics)")
    return lines


def print_summary(log: EvalLog | str | Path, console: Console | None = None) -> EvalLog:
    if not isinstance(log, EvalLog):
        log = read_log(log, header_only=True, finished=False)  # shown even unfinished, to diagnose it
    console = console or make_console()
    console.print(summary_table(log))
    reason = unfinished_reason(log)
    if reason is not None:
        console.print(f"{log.location}: the run did not finish ({plain_text(reason)})", style="red", markup=False)
    console.print(f"log: {log.location}")
    return log
