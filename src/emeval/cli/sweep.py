"""``emeval sweep``: run or resume a checkpoint sweep (``emeval.local.sweep``), then report it
(``emeval.report.sweep``); with ``--shard I/N``, run one shard of it and report nothing."""

from __future__ import annotations

import typer
from rich.markup import escape

from emeval.cli.options import name_values_option
from emeval.report.terminal import make_console


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


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
    out: str = typer.Option(
        "sweep", "--out", help="Sweep folder or log store URL such as s3://bucket/prefix (logs, curves, plots, report); "
        "rerun to resume."
    ),
    group_by: str | None = typer.Option(
        None, "--group-by", help="Also split curves by a column of the samples (e.g. question_id), beside the overall curve."
    ),
    metrics: str | None = typer.Option(None, "--metrics", help="Comma-separated metrics to plot and test (default all)."),
    report_only: bool = typer.Option(False, "--report-only", help="Only recompute curves, plots and report from OUT's logs."),
    retry_attempts: int = typer.Option(3, "--retry-attempts", help="eval_set retries of a failed eval."),
    shard: str | None = typer.Option(
        None, "--shard", help="Run only shard I of N of the checkpoints (I/N, or auto/N from SLURM_ARRAY_TASK_ID or "
        "JOB_COMPLETION_INDEX); reports nothing: run --report-only after every shard."
    ),
) -> None:
    """Evaluate every checkpoint of a training run with the same evals, then find the phase transition.

    Exits 1 when a checkpoint's eval failed, 4 (no measurable result) when an eval's headline rests on
    n = 0 at some checkpoint."""
    from emeval.local.checkpoints import CheckpointError
    from emeval.local.sweep import SweepError, load_settings, resumed_settings, run_sweep, sample_values, unfinished_logs
    from emeval.logs.store import as_location, join
    from emeval.report.measurable import NO_MEASURABLE_RESULT, warn_unmeasured
    from emeval.report.sweep import analyse, runs_table, unmeasured_checkpoints
    from emeval.shards import ShardError, parse_shard

    console = make_console()
    out = as_location(out)  # a local Path, or a log store URL as it is (s3://...)
    try:
        part = parse_shard(shard) if shard is not None else None
    except ShardError as ex:
        raise typer.BadParameter(str(ex), param_hint="--shard") from None
    if part is not None and report_only:
        raise typer.BadParameter("a shard runs part of the sweep and --report-only reports all of it: give one",
                                 param_hint="--shard")
    runs = []
    try:
        previous = load_settings(out)  # a broken sweep.json fails here, before anything runs
        if not report_only:
            settings = resumed_settings(
                out, previous, base=base, checkpoints=_names(checkpoints), evals=_names(evals),
                task_args=name_values_option("-T", task_arg), model_args=name_values_option("-M", model_arg),
                judge=judge, judge_args=name_values_option("-J", judge_arg), seed=seed, limit=limit, epochs=epochs,
                steps_from_name=steps_from_name, include_base=include_base,
            )
            runs = run_sweep(settings, out, display="rich" if console.is_terminal else "plain",
                             retry_attempts=retry_attempts, progress=lambda message: console.print(message, markup=False),
                             shard=(part.index, part.count) if part else (0, 1))
            console.print(runs_table(out, runs))
        if part is None:  # a shard saw only its own checkpoints: the curves wait for every shard
            samples = sample_values(out, defined_only=False)  # the logs, read once (a store charges each read)
            curves = analyse(out, group_by=group_by, metrics=_names(metrics), samples=samples)
            unfinished = unfinished_logs(out)
            unmeasured = unmeasured_checkpoints(out, samples)
    except (SweepError, CheckpointError, ValueError, FileNotFoundError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    if part is not None:
        steps = ", ".join(f"{run.checkpoint.step} ({run.checkpoint.label}): {run.status}" for run in runs) or "none"
        console.print(f"Shard {part} of the sweep, steps {steps}.", markup=False)
        if any(run.status == "failed" for run in runs):
            console.print("Rerun this shard to resume its failed checkpoints.", style="red", markup=False)
            raise typer.Exit(1)
        console.print(f"After every shard has run, report the sweep: emeval sweep --out {out} --report-only", markup=False)
        raise typer.Exit(0)
    for curve in curves:
        console.print(f"[bold]{escape(curve.title)}[/bold]: {escape(curve.change.summary)}")
    console.print(f"report: {join(out, 'report.md')}  curves: {join(out, 'curves.csv')}  plots: {join(out, 'plots')}")
    for line in unfinished:  # their checkpoints are missing from the curves: say so, and fail
        console.print(f"not in the curves, the run did not finish: {line}", style="red", markup=False)
    if unfinished or any(run.status == "failed" for run in runs):
        raise typer.Exit(1)
    if unmeasured:
        warn_unmeasured(console, unmeasured)
        raise typer.Exit(NO_MEASURABLE_RESULT)

