"""``emeval compare A B``: B - A for every metric, with its bootstrap CI (``emeval.report.compare``)."""

from __future__ import annotations

from pathlib import Path

import typer

from emeval.cli.options import groups_option
from emeval.report.terminal import make_console


def compare_command(
    a: str = typer.Argument(..., help="Side A: a log or folder of logs, or (with LOGS) a group name or run id."),
    b: str = typer.Argument(..., help="Side B, as A."),
    logs: list[str] = typer.Argument(None, help="Logs, folders or store URLs holding both sides (A, B: group names or run ids)."),
    group: list[str] = typer.Option([], "--group", help="NAME=PATTERN: define groups (with LOGS). Repeatable."),
    per_question: bool = typer.Option(True, "--per-question/--overall-only", help="Also compare question by question."),
    all_metrics: bool = typer.Option(False, "--all-metrics", help="Show every score key, not only the headline ones."),
    csv: Path | None = typer.Option(None, "--csv", help="Write every comparison row (all metrics) to this CSV."),
) -> None:
    """B - A for every metric (and per question), with a 95% bootstrap CI; * marks a CI that excludes 0.

    The backdoor A/B: run the same eval without and with ``-T trigger=...`` and compare the two logs.
    Exits 4 (no measurable result) when a side's headline rests on n = 0."""
    from emeval.report.compare import run_compare
    from emeval.logs.read import LogError
    from emeval.report.measurable import NO_MEASURABLE_RESULT, unmeasured_comparisons, warn_unmeasured

    console = make_console()
    try:
        result = run_compare(a, b, logs or [], groups_option(group) or None, per_question, all_metrics, console, csv)
    except (LogError, ValueError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    unmeasured = unmeasured_comparisons(result, a, b)
    if unmeasured:
        warn_unmeasured(console, unmeasured, "comparison")
        raise typer.Exit(NO_MEASURABLE_RESULT)
