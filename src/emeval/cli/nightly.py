"""The typer command ``emeval nightly``; registered in ``emeval.cli.app``, body in ``command``."""

from __future__ import annotations

from pathlib import Path

import typer

from emeval.report.terminal import make_console


def nightly_command(
    config: Path = typer.Argument(..., help="The nightly YAML file (models, groups, evals, judge, paths)."),
    night: str | None = typer.Option(
        None, "--night", help="The night's date, YYYY-MM-DD (default: today). Rerunning a night resumes it."
    ),
) -> None:
    """Run the nightly evals, append them to the history, report trends; exit 1 on a regression.

    Exit codes: 0 ok, 1 a metric regressed beyond its CI, 2 bad config or history, 3 an eval run failed.
    """
    from emeval.nightly.command import nightly

    raise typer.Exit(nightly(config, night, make_console()))
