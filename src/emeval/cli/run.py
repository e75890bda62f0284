"""The ``emeval run`` command (registered in ``emeval.cli.app``): one run, split into shards.

Thin: the plan, the shard runner and the launchers are ``emeval.shards``.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from emeval.cli.options import name_values_option
from emeval.report.terminal import make_console


def run_command(
    tasks: list[str] = typer.Argument(..., help="Task files (evals/free_form.py) or registry names (emeval/free_form)."),
    model: list[str] = typer.Option(..., "--model", help="A model to evaluate, provider/name. Repeatable."),
    log_dir: str = typer.Option("logs/run", "--log-dir", help="Log store: a folder or an fsspec URL (s3://bucket/prefix)."),
    task_arg: list[str] = typer.Option([], "-T", "--task-arg", help="name=value task argument (YAML value). Repeatable."),
    model_arg: list[str] = typer.Option(
        [], "-M", "--model-arg", help="name=value model argument, e.g. tensor_parallel_size=4 for vllm/. Repeatable."
    ),
    model_role: list[str] = typer.Option([], "--model-role", help="role=provider/model, e.g. grader=openai/gpt-4o."),
    shard: str | None = typer.Option(
        None, "--shard", help="Run only shard I of N here (I/N; auto/N takes I from SLURM_ARRAY_TASK_ID or "
        "JOB_COMPLETION_INDEX). Default: run every shard."
    ),
    shards: int | None = typer.Option(None, "--shards", help="How many shards to split into (default: --processes)."),
    processes: int | None = typer.Option(
        None, "--processes", help="Local processes running shards at once (default: the number of cores)."
    ),
    launcher: str = typer.Option("local", "--launcher", help="local (a process pool) or ray (one Ray task per shard)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster to join (default: start a local one)."),
    max_connections: int | None = typer.Option(None, "--max-connections", help="Concurrent model calls per shard."),
    retry_attempts: int = typer.Option(3, "--retry-attempts", help="eval_set retries of a failed task."),
    display: str = typer.Option("none", "--display", help="Inspect's display for each shard (none, log, plain...)."),
) -> None:
    """Run tasks over models as N shards into one log store; re-running resumes (eval_set)."""
    from emeval.shards import RunSpec, ShardError, launch, task_specs

    console = make_console()
    roles = name_values_option("--model-role", model_role)
    for role, name in roles.items():
        if not isinstance(name, str):  # the shards run in other processes: a model travels as its name
            raise typer.BadParameter(f"{role}={name!r}: give the model as provider/name", param_hint="--model-role")
    options: dict[str, Any] = {"retry_attempts": retry_attempts, "display": display}
    if model_arg:
        options["model_args"] = name_values_option("-M", model_arg)
    if max_connections is not None:
        options["max_connections"] = max_connections
    try:
        specs = tuple(s for task in tasks for s in task_specs(task))
        spec = RunSpec(specs, tuple(model), log_dir, name_values_option("-T", task_arg), roles, options)
        results = launch(spec, shard=shard, launcher=launcher, shards=shards, processes=processes,
                         ray_address=ray_address)
    except ShardError as ex:
        console.print(str(ex), style="red", markup=False)
        raise typer.Exit(2) from None
    for result in results:
        state = "[green]done[/green]" if result.success else "[red]failed[/red]"
        console.print(f"shard {result.shard}: {state}, {len(result.logs)} logs" + (
            f" ({escape(result.error)})" if result.error else ""))
    console.print(f"log store: {escape(log_dir)}  (read it whole: emeval report {escape(log_dir)})")
    if not all(r.success for r in results):
        raise typer.Exit(1)
