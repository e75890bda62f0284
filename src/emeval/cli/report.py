"""The ``emeval report`` and ``emeval compare`` commands (registered in ``emeval.cli.app``).

Kept out of cli.py so the shared file only registers them; heavy imports (pandas, matplotlib)
happen when a command runs, not when ``emeval --help`` starts.
"""

from __future__ import annotations

from pathlib import Path

import typer

from emeval.report.terminal import make_console

console = make_console()


def _groups(options: list[str]) -> dict[str, str]:
    from emeval.logs.frame import parse_groups

    try:
        return parse_groups(options)
    except ValueError as ex:
        raise typer.BadParameter(str(ex)) from None


def _pairs(options: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for option in options:
        a, sep, b = option.partition(",")
        if not sep or not a or not b:
            raise typer.BadParameter(f"--compare {option!r}: expected A,B (two group names)")
        pairs.append((a, b))
    return pairs


def report_command(
    logs: list[str] = typer.Argument(..., help="Inspect logs (.eval/.json), directories of logs, or log store URLs (s3://...)."),
    group: list[str] = typer.Option(
        [], "--group", help="NAME=PATTERN: models (or log paths) matching the glob form group NAME. Repeatable."
    ),
    out: Path = typer.Option(Path("reports/report"), "--out", help="Folder for the four report files."),
    title: str | None = typer.Option(None, "--title", help="Report title."),
    compare: list[str] = typer.Option([], "--compare", help="A,B: also report B - A between two groups. Repeatable."),
    top: int = typer.Option(50, "--top", help="How many of the most misaligned answers to list."),
) -> None:
    """Write an HTML + Markdown report (with samples.csv and summary.json) from Inspect logs.

    Exits 4 (no measurable result) when a headline rests on n = 0; the report is written all the same."""
    from emeval.logs.frame import read_logs
    from emeval.logs.read import LogError
    from emeval.report.measurable import NO_MEASURABLE_RESULT, unmeasured_cells, warn_unmeasured
    from emeval.report import write_report

    groups = _groups(group)
    try:
        with console.status("Reading logs and building the report..."):
            data = read_logs(logs, groups or None)
            index = write_report(data, groups or None, out, title=title, comparisons=_pairs(compare), top=top)
    except (LogError, ValueError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    for name in ("index.html", "report.md", "samples.csv", "summary.json"):
        console.print(f"{index.parent / name}")
    unmeasured = unmeasured_cells(data.samples)
    if unmeasured:
        warn_unmeasured(console, unmeasured)
        raise typer.Exit(NO_MEASURABLE_RESULT)


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

    try:
        result = run_compare(a, b, logs or [], _groups(group) or None, per_question, all_metrics, console, csv)
    except (LogError, ValueError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    unmeasured = unmeasured_comparisons(result, a, b)
    if unmeasured:
        warn_unmeasured(console, unmeasured, "comparison")
        raise typer.Exit(NO_MEASURABLE_RESULT)
