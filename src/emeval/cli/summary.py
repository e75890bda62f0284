"""``emeval summary LOG``: the headline table of a finished free-form run (``emeval.report.summary``)."""

from __future__ import annotations

import typer

from emeval.report.terminal import make_console


def summary_command(
    log: str = typer.Argument(..., help="An Inspect log (.eval or .json): a path or a URL (s3://...)."),
) -> None:
    """Print the headline table of a finished free-form run.

    Exits 1 when the run did not finish, 4 (no measurable result) when its misaligned rate rests on n = 0."""
    from emeval.logs.read import LogError
    from emeval.report.measurable import NO_MEASURABLE_RESULT, warn_unmeasured
    from emeval.report.summary import print_summary, unmeasured_headlines

    console = make_console()
    try:
        shown = print_summary(log, console)
    except LogError as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    if shown.status != "success":
        raise typer.Exit(1)
    unmeasured = unmeasured_headlines(shown)
    if unmeasured:
        warn_unmeasured(console, unmeasured)
        raise typer.Exit(NO_MEASURABLE_RESULT)
