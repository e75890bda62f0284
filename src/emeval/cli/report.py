"""``emeval report``: Inspect logs -> index.html, report.md, samples.csv, summary.json (``emeval.report``).

Heavy imports (pandas, matplotlib) happen when the command runs, not when ``emeval --help`` starts.
"""

from __future__ import annotations

from pathlib import Path

import typer

from emeval.cli.options import groups_option
from emeval.report.terminal import make_console


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

    console = make_console()
    groups = groups_option(group)
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
