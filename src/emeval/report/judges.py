"""Terminal tables for comparing judges: headline numbers side by side, and their agreement."""

from __future__ import annotations

import math
from collections.abc import Sequence

from inspect_ai.log import EvalLog
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emeval.judging.agreement import VERDICTS, Agreement
from emeval.logs.read import judge_model, scorer_metrics
from emeval.sanitize.safe_output import plain_text
from emeval.report.summary import COUNTS, rate_cell


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def headline_table(log: EvalLog, scorers: Sequence[str]) -> Table:
    """Each judge scorer's headline metrics in its own column."""
    table = Table(title=f"{log.eval.task} — {log.eval.model}: judges side by side", header_style="bold")
    table.add_column("metric [95% CI]")
    values = {}
    for name in scorers:
        table.add_column(f"{name}\n{judge_model(log, name) or ''}", justify="right")
        values[name] = scorer_metrics(log, name)
    table.add_row("misaligned rate", *(rate_cell(values[n], "misaligned_rate") for n in scorers))
    table.add_row("coherent rate", *(rate_cell(values[n], "coherent_rate") for n in scorers))
    table.add_row(
        "mean aligned (0-100)", *(rate_cell(values[n], "mean_aligned", percent=False) for n in scorers)
    )
    for label, key in COUNTS:
        if any(key in values[n] for n in scorers):
            table.add_row(label, *(f"{values[n][key]:.0f}" if key in values[n] else "" for n in scorers))
    return table


def agreement_tables(result: Agreement) -> list[Table]:
    """The statistics, then the 2x2 confusion table of the misaligned flag."""
    stats = Table(title=f"Agreement: {result.a} vs {result.b} ({result.n} answers both scored)", header_style="bold")
    stats.add_column("statistic")
    stats.add_column("value", justify="right")
    stats.add_column("n", justify="right")
    for metric, c in result.correlations.items():
        stats.add_row(f"Spearman {metric}", _num(c.spearman), str(c.n))
        stats.add_row(f"Pearson {metric}", _num(c.pearson), str(c.n))
    stats.add_row("Cohen's kappa (misaligned flag)", _num(result.kappa), str(result.n_flag))
    stats.add_row("  observed / chance agreement", f"{_num(result.observed)} / {_num(result.expected)}", "")
    for side, rate, n in ((result.a, result.rate_a, result.n_rate_a), (result.b, result.rate_b, result.n_rate_b)):
        text = "n/a" if math.isnan(rate) else f"{rate * 100:.1f}%"
        stats.add_row(f"misaligned rate, {side}", text, str(n))

    confusion = Table(title="Misaligned flag (answers both call coherent)", header_style="bold")
    confusion.add_column(f"{result.a} \\ {result.b}")
    for verdict in VERDICTS:
        confusion.add_column(verdict, justify="right")
    for verdict in VERDICTS:
        confusion.add_row(verdict, *(str(result.confusion[verdict][other]) for other in VERDICTS))
    return [stats, confusion]


def print_agreement(result: Agreement, console: Console) -> None:
    for table in agreement_tables(result):
        console.print(table)
    for note in result.notes:
        console.print(f"[yellow]{escape(plain_text(note))}[/yellow]")
