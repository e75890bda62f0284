"""The ``emeval sweep`` command (registered in ``emeval.cli.app``): run or resume a sweep, then report it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from emeval.report.terminal import make_console


def _pairs(option: str, items: list[str]) -> dict[str, Any]:
    """``key=value`` options; values read as YAML, as Inspect reads -T/-M."""
    import yaml

    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: expected key=value", param_hint=option)
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _given(value: Any, previous: Any, name: str, default: Any) -> Any:
    """An option as given, else the resumed sweep's setting, else its default."""
    if value is not None:
        return value
    return getattr(previous, name) if previous is not None else default


def sweep_command(
    base: str | None = typer.Option(None, "--base", help="Base model: hf/<folder or hub id> or vllm/<folder or hub id>."),
    checkpoints: str | None = typer.Option(
        None, "--checkpoints", help="Checkpoint folders or adapters: a glob, a folder of them, or a comma-separated list."
    ),
    evals: str | None = typer.Option(None, "--evals", help="Comma-separated evals (default logprob_probes)."),
    task_arg: list[str] = typer.Option(
        [], "-T", "--task-arg", help="name=value for every eval taking it; eval.name=value for one."
    ),
    model_arg: list[str] = typer.Option([], "-M", "--model-arg", help="Model args for every checkpoint (e.g. device=cpu)."),
    judge: str | None = typer.Option(None, "--judge", help="Judge model (the grader role) for judged evals."),
    judge_arg: list[str] = typer.Option([], "-J", "--judge-arg", help="Judge model args (key=value)."),
    seed: int | None = typer.Option(None, "--seed", help="Run seed, the same for every checkpoint (default 0)."),
    limit: int | None = typer.Option(None, "--limit", help="Samples per eval (the first N)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per eval."),
    steps_from_name: str | None = typer.Option(
        None, "--steps-from-name", help="Regex whose first group is the step in a checkpoint's folder name."
    ),
    include_base: bool | None = typer.Option(
        None, "--include-base/--no-base", help="Evaluate the base model as step 0 (default: yes)."
    ),
    out: Path = typer.Option(Path("sweep"), "--out", help="Sweep folder (logs, curves, plots, report); rerun to resume."),
    group_by: str | None = typer.Option(
        None, "--group-by", help="Also split curves by a column of the samples (e.g. question_id), beside the overall curve."
    ),
    metrics: str | None = typer.Option(None, "--metrics", help="Comma-separated metrics to plot and test (default all)."),
    report_only: bool = typer.Option(False, "--report-only", help="Only recompute curves, plots and report from OUT's logs."),
    retry_attempts: int = typer.Option(3, "--retry-attempts", help="eval_set retries of a failed eval."),
) -> None:
    """Evaluate every checkpoint of a training run with the same evals, then find the phase transition.

    Exits 1 when a checkpoint's eval failed, 4 (no measurable result) when an eval's headline rests on
    n = 0 at some checkpoint."""
    from emeval.local.checkpoints import CheckpointError
    from emeval.report.measurable import NO_MEASURABLE_RESULT, unmeasured_cells, warn_unmeasured
    from emeval.local.sweep import SweepError, SweepSettings, load_settings, run_sweep, sample_values, unfinished_logs
    from emeval.report.sweep import analyse

    console = make_console()
    try:
        previous = load_settings(out)
        if not report_only:
            if previous is None and (base is None or checkpoints is None):
                raise SweepError(f"{out} holds no sweep yet: give --base and --checkpoints")
            settings = SweepSettings(
                base=base or previous.base,  # type: ignore[union-attr]
                checkpoints=_names(checkpoints) or previous.checkpoints,  # type: ignore[union-attr]
                evals=_names(evals) or (previous.evals if previous else ["logprob_probes"]),
                task_args=_pairs("-T", task_arg) or (previous.task_args if previous else {}),
                model_args=_pairs("-M", model_arg) or (previous.model_args if previous else {}),
                judge=judge or (previous.judge if previous else None),
                judge_args=_pairs("-J", judge_arg) or (previous.judge_args if previous else {}),
                seed=_given(seed, previous, "seed", 0),
                limit=_given(limit, previous, "limit", None),
                epochs=_given(epochs, previous, "epochs", None),
                steps_from_name=_given(steps_from_name, previous, "steps_from_name", None),
                include_base=_given(include_base, previous, "include_base", True),
            )
            runs = run_sweep(settings, out, display="rich" if console.is_terminal else "plain",
                             retry_attempts=retry_attempts, progress=lambda message: console.print(message, markup=False))
            table = Table(title=escape(f"sweep {out}"), header_style="bold")
            for column in ("step", "checkpoint", "kind", "status", "error"):
                table.add_column(column)
            for run in runs:
                c = run.checkpoint
                table.add_row(str(c.step), escape(c.label), c.kind, run.status, escape(run.error or ""))
            console.print(table)
        curves = analyse(out, group_by=group_by, metrics=_names(metrics))
        unfinished = unfinished_logs(out)
        read = sample_values(out, defined_only=False)
        unmeasured = unmeasured_cells(read, by=("eval", "checkpoint")) if len(read) else [
            f"{out}: no checkpoint has a finished log to measure"]
    except (SweepError, CheckpointError, ValueError, FileNotFoundError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    for curve in curves:
        console.print(f"[bold]{escape(curve.title)}[/bold]: {escape(curve.change.summary)}")
    console.print(f"report: {out / 'report.md'}  curves: {out / 'curves.csv'}  plots: {out / 'plots'}")
    for line in unfinished:  # their checkpoints are missing from the curves: say so, and fail
        console.print(f"not in the curves, the run did not finish: {line}", style="red", markup=False)
    if unfinished or (not report_only and any(run.status == "failed" for run in runs)):
        raise typer.Exit(1)
    if unmeasured:
        warn_unmeasured(console, unmeasured)
        raise typer.Exit(NO_MEASURABLE_RESULT)
