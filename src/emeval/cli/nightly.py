"""``emeval nightly CONFIG.yaml``: run, record, compare, report (``emeval.nightly.night``); the exit code
says what happened.

Exit codes (documented in the README, meant for cron and CI):
0 -- the night ran and nothing regressed; 1 -- at least one metric regressed;
2 -- the config or the history file cannot be used; 3 -- an eval could not run or ended unsuccessfully
(nothing is recorded for the night: rerun it, and eval_set resumes where it stopped), or the night's
logs could not be summarised or reported; 4 -- no regression, but a headline of the night rests on
n = 0 (``emeval.report.measurable``: e.g. every answer unscorable); the night is recorded and reported.
"""

from __future__ import annotations

from pathlib import Path

import typer

from emeval.report.terminal import make_console

EXIT_OK, EXIT_REGRESSED, EXIT_CONFIG, EXIT_RUN_FAILED = 0, 1, 2, 3


def nightly_command(
    config: Path = typer.Argument(..., help="The nightly YAML file (models, groups, evals, judge, paths)."),
    night: str | None = typer.Option(
        None, "--night", help="The night's date, YYYY-MM-DD (default: today). Rerunning a night resumes it."
    ),
    shard: str | None = typer.Option(
        None, "--shard", help="Run only shard I of N of the night's eval x group units (I/N, or auto/N from "
        "SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX); records nothing: run --merge after every shard."
    ),
    merge: bool = typer.Option(
        False, "--merge", help="Run nothing: record, compare and report the night from its shards' logs."
    ),
) -> None:
    """Run the nightly evals, append them to the history, report trends; exit 1 on a regression.

    Exit codes: 0 ok, 1 a metric regressed beyond its CI, 2 bad config or history, 3 an eval run failed.
    """
    from emeval.nightly.config import ConfigError, load_config, parse_night
    from emeval.nightly.history import HistoryError
    from emeval.nightly.night import run_night_shard, run_nightly
    from emeval.nightly.regression import regression_table
    from emeval.nightly.run import NightRunError, night_location
    from emeval.report.measurable import NO_MEASURABLE_RESULT, warn_unmeasured

    from emeval.shards import ShardError, parse_shard

    console = make_console()
    try:
        loaded = load_config(config)
        night = parse_night(night)
        part = parse_shard(shard) if shard is not None else None
        if part is not None and merge:
            raise ConfigError("--shard runs one part of a night and --merge records a whole one: give one of them")
    except (ConfigError, ShardError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(EXIT_CONFIG) from None
    console.print(f"[bold]{loaded.config.name}[/bold]: night {night}, logs in {night_location(loaded.config.log_dir, night)}")
    if part is not None:
        try:
            ran = run_night_shard(loaded, night, part)
        except NightRunError as ex:
            console.print(f"{loaded.path}: shard {part}: {ex}", style="red", markup=False)
            raise typer.Exit(EXIT_RUN_FAILED) from None
        units = ", ".join(f"{run.eval}/{run.group}" for run in ran.runs) or "none"
        console.print(f"[green]Shard {part} of {night} ran: {units}.[/green] Record the night with --merge after every shard.")
        raise typer.Exit(EXIT_OK)
    try:
        outcome = run_nightly(loaded, night, merge=merge)
    except HistoryError as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(EXIT_CONFIG) from None
    except NightRunError as ex:
        console.print(f"{loaded.path}: {ex}", style="red", markup=False)
        console.print("Rerun the same night to resume it.")
        raise typer.Exit(EXIT_RUN_FAILED) from None
    except Exception:  # reading the logs or writing the report: never exit 1, which means "regressed"
        console.print_exception()
        console.print(f"[red]{loaded.path}: night {night} could not be summarised or reported.[/red] "
                      "Rerun the same night: finished evals are reused, the night is recorded again.")
        raise typer.Exit(EXIT_RUN_FAILED) from None
    console.print(f"report: {outcome.report_dir / 'index.html'}")
    if outcome.unmeasured:  # before the verdict, which says nothing about these headlines
        warn_unmeasured(console, outcome.unmeasured, f"result on {night}")
    ok = NO_MEASURABLE_RESULT if outcome.unmeasured else EXIT_OK
    if outcome.baseline is None:
        why = "it is the pinned baseline" if str(loaded.config.baseline) == night else "no earlier night to compare with"
        console.print(f"[green]Recorded {night} ({why}).[/green]")
        raise typer.Exit(ok)
    if len(outcome.regressed):
        console.print(regression_table(outcome.comparison, night))
        console.print(f"[red]{len(outcome.regressed)} of {outcome.checked} metrics regressed vs {outcome.baseline}.[/red]")
        raise typer.Exit(EXIT_REGRESSED)
    console.print(f"[green]No regression vs {outcome.baseline} ({outcome.checked} metrics checked).[/green]")
    raise typer.Exit(ok)
