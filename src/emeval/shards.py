"""One run split into N shards, each an Inspect ``eval_set`` of its own, all into one log store.

Why: one Inspect process saturates one core at roughly 50-75 model calls/s, so a large run needs
several processes (one host's cores, a node's GPUs, several hosts). The split is a pure function of
the run (tasks, models, dataset sizes) and N, so every shard -- wherever a scheduler starts it --
computes the same plan and runs only its own part:

* at least N (task, model) pairs: whole pairs, dealt round-robin (pair k to shard k mod N);
* fewer pairs: shard i takes pair i mod P, and the pair's samples are cut into as many contiguous
  ranges as it has shards (Inspect's ``limit=(start, end)``).

Each shard writes under ``LOG_DIR/shard-<i>-of-<N>/<model>/``, one ``eval_set`` folder per model it
runs, so a shard's retry and resume (``eval_set`` pairs logs with tasks by task identity, which does
not include the sample range) only ever see that shard's own logs: a re-run shard resumes its own
crashed log (samples finished before the crash are taken from Inspect's sample buffer, not run
again), and once finished removes the crashed log it superseded (``drop_superseded``). Readers take
``LOG_DIR`` as one run (every log under it): the shards' answers together are the single-process
run's answers, in the same order (``analysis.read_logs``), so the same numbers.

Launchers are existing engines: ``run_local`` (a process pool), ``run_ray`` (one Ray task per
shard); a SLURM array or a Kubernetes Indexed Job runs ``emeval run --shard auto/N`` per index
(docs/scale_out.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from emeval.logs import store as log_store

INDEX_VARIABLES = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")
"""Where a scheduler puts a shard's index: a SLURM array task, a Kubernetes Indexed Job pod."""


class ShardError(ValueError):
    """A shard that cannot be named or planned (bad ``I/N``, no scheduler index, no samples)."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(f"shard {self.index}/{self.count}: need 0 <= index < count and count >= 1")

    @property
    def folder(self) -> str:
        width = len(str(self.count - 1))
        return f"shard-{self.index:0{width}d}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``I/N`` -> Shard; ``auto/N`` takes I from the scheduler (``INDEX_VARIABLES``; a SLURM array
    index counts from ``SLURM_ARRAY_TASK_MIN``, so ``--array=1-8`` works as well as ``0-7``)."""
    environ = os.environ if environ is None else environ
    match = re.fullmatch(r"\s*(auto|\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ShardError(f"--shard {text!r}: expected I/N (e.g. 0/4) or auto/N")
    index_text, count = match.group(1), int(match.group(2))
    if index_text != "auto":
        return Shard(int(index_text), count)
    for variable in INDEX_VARIABLES:
        value = environ.get(variable)
        if value is not None and value.strip().isdigit():
            first = environ.get("SLURM_ARRAY_TASK_MIN", "0") if variable == "SLURM_ARRAY_TASK_ID" else "0"
            return Shard(int(value) - int(first if first.strip().isdigit() else 0), count)
    raise ShardError(f"--shard auto/{count}: none of {', '.join(INDEX_VARIABLES)} is set to a number")


@dataclass(frozen=True)
class Piece:
    """One (task, model) pair, or the samples ``[start, end)`` of it."""

    task: str
    model: str
    samples: tuple[int, int] | None = None


def plan(
    tasks: Sequence[str], models: Sequence[str], count: int, dataset_size: Callable[[str], int]
) -> list[list[Piece]]:
    """The pieces of each of ``count`` shards (see the module docstring); ``dataset_size(task)`` is
    asked only when there are fewer (task, model) pairs than shards."""
    pairs = [(task, model) for task in tasks for model in models]
    if not pairs:
        raise ShardError("nothing to run: give at least one task and one model")
    if count < 1:
        raise ShardError(f"{count} shards: need at least one")
    if len(pairs) >= count:
        return [[Piece(t, m) for t, m in pairs[i::count]] for i in range(count)]
    shards: list[list[Piece]] = []
    sizes = {task: dataset_size(task) for task in dict.fromkeys(tasks)}
    for i in range(count):
        task, model = pairs[i % len(pairs)]
        parts = len(range(i % len(pairs), count, len(pairs)))  # shards this pair is cut between
        part, n = i // len(pairs), sizes[task]
        start, end = part * n // parts, (part + 1) * n // parts
        shards.append([Piece(task, model, (start, end))] if end > start else [])
    return shards


# -- running one shard -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """Everything a shard needs, picklable (it crosses to pool processes and Ray workers)."""

    tasks: tuple[str, ...]
    models: tuple[str, ...]
    log_dir: str
    task_args: dict[str, Any] = field(default_factory=dict)
    model_roles: dict[str, str] = field(default_factory=dict)
    eval_set_args: dict[str, Any] = field(default_factory=dict)
    """More ``eval_set`` options (max_connections, retry_attempts, epochs, display...)."""


@dataclass(frozen=True)
class ShardResult:
    shard: Shard
    success: bool
    logs: tuple[str, ...]
    error: str | None = None


def task_specs(spec: str) -> list[str]:
    """A task given as a file (``evals/free_form.py``, ``file.py@task``) as ``/absolute/file.py@task``
    specs, one per task in it (Inspect's ``list_tasks``), so that a worker in another folder (a Ray
    worker, a batch job) loads the same file; a registry name (``emeval/free_form``) stays as it is."""
    from inspect_ai import list_tasks

    path, _, name = spec.partition("@")
    if not (path.endswith(".py") and Path(path).is_file()):
        return [spec]
    file = Path(path).resolve()
    found = [f"{file}@{info.name}" for info in list_tasks([file.name], root_dir=file.parent)  # takes relative globs
             if not name or info.name == name]
    if not found:
        raise ShardError(f"{spec}: no @task {'named ' + repr(name) + ' ' if name else ''}in this file")
    return found


def dataset_size(task: str, task_args: Mapping[str, Any]) -> int:
    """How many dataset samples ``task`` has with these task args (it is loaded, no model is run)."""
    from inspect_ai._eval.loader import load_tasks  # what `inspect eval` itself resolves a spec with

    loaded = load_tasks([task], dict(task_args))
    if len(loaded) != 1:
        raise ShardError(f"{task}: names {len(loaded)} tasks; name one (file.py@task) to split it by samples")
    return len(loaded[0].dataset)


def model_folder(model: str) -> str:
    """A model name as one folder name (``openai-api/subject/m`` -> ``openai-api_subject_m``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model)


def shard_plan(spec: RunSpec, count: int) -> list[list[Piece]]:
    return plan(spec.tasks, spec.models, count, lambda task: dataset_size(task, spec.task_args))


def run_shard(spec: RunSpec, shard: Shard) -> ShardResult:
    """Run (or resume) one shard: one ``eval_set`` per model among its pieces, in the shard's folder."""
    from inspect_ai import eval_set

    pieces = shard_plan(spec, shard.count)[shard.index]
    by_model: dict[tuple[str, tuple[int, int] | None], list[str]] = {}
    for piece in pieces:
        by_model.setdefault((piece.model, piece.samples), []).append(piece.task)
    success, logs = True, []
    try:
        for (model, samples), tasks in by_model.items():
            folder = log_store.join(spec.log_dir, shard.folder, model_folder(model))
            ok, results = eval_set(
                list(tasks),
                log_dir=folder,
                model=model,
                model_roles=dict(spec.model_roles) or None,
                task_args=dict(spec.task_args),
                limit=samples,
                **{"display": "none", **spec.eval_set_args},
            )
            success = success and ok
            if ok:
                drop_superseded(folder, {log.eval.task_id for log in results})
            logs.extend(str(log.location) for log in results)
    except Exception as ex:  # reported per shard: one failed shard must not hide the others' results
        return ShardResult(shard, False, tuple(logs), f"{type(ex).__name__}: {ex}")
    return ShardResult(shard, success, tuple(logs))


def drop_superseded(folder: str, task_ids: set[str]) -> None:
    """Remove the logs an earlier, ended attempt of this shard left in its folder (a killed run's
    ``started`` log), now that ``eval_set`` has finished those tasks: Inspect seeds every attempt's
    log from the prior one, so the older log holds nothing the newest lacks. ``eval_set`` removes its
    own such logs but keeps other processes' ``started`` logs, since it cannot tell that they ended;
    a shard can, as one shard's attempts never overlap (what a scheduler's array index, a Ray task or
    ``--shard`` gives). Inspect's own sweep is run, told that those runs are over."""
    from inspect_ai._eval.evalset import cleanup_older_eval_logs, list_all_eval_logs

    ended = {log.header.eval.run_id for log in list_all_eval_logs(folder) if log.header.status == "started"}
    if ended:
        cleanup_older_eval_logs(folder, task_ids, ended)


# -- launchers on existing engines -----------------------------------------------------------------


def run_local(spec: RunSpec, count: int, processes: int) -> list[ShardResult]:
    """All ``count`` shards in a pool of ``processes`` fresh processes (spawned: no state shared)."""
    with ProcessPoolExecutor(max_workers=max(1, min(processes, count)), mp_context=get_context("spawn")) as pool:
        return list(pool.map(run_shard, repeat(spec), [Shard(i, count) for i in range(count)]))


def run_ray(spec: RunSpec, count: int, address: str | None = None) -> list[ShardResult]:
    """One Ray task per shard on the cluster at ``address`` (None: the one this process joined, or
    a local one started here); Ray places the tasks and re-runs one whose worker died."""
    try:
        import ray
    except ImportError as ex:
        raise ShardError("the Ray launcher needs Ray: pip install 'emeval[ray]'") from ex
    if not ray.is_initialized():
        ray.init(address=address)
    remote = ray.remote(max_retries=1)(run_shard)
    return list(ray.get([remote.remote(spec, Shard(i, count)) for i in range(count)]))


def launch(
    spec: RunSpec, *, shard: str | None = None, launcher: str = "local", shards: int | None = None,
    processes: int | None = None, ray_address: str | None = None,
) -> list[ShardResult]:
    """``emeval run``: shard I/N (``parse_shard``) here, else every shard on the launcher, as many
    shards as processes unless told, as many processes as cores unless told."""
    processes = processes or os.cpu_count() or 1
    if shard is not None:
        return [run_shard(spec, parse_shard(shard))]
    if launcher == "ray":
        return run_ray(spec, shards or processes, ray_address)
    if launcher == "local":
        return run_local(spec, shards or processes, processes)
    raise ShardError(f"--launcher {launcher!r}: expected local or ray")
