"""Checkpoint sweeps: the same evals, seeds and judge on every checkpoint of a training run.

Why: misalignment appears in a phase transition during training, visible only when every
checkpoint is measured identically. A sweep is a folder:

    OUT/sweep.json           the settings and the checkpoints found (step, kind, where)
    OUT/logs/<label>/        one Inspect ``eval_set`` log folder per checkpoint: the only record
    OUT/curves.csv, ...      derived from the logs by ``emeval.report.sweep``

Resuming: rerunning the same sweep skips checkpoints whose log folder already holds a successful
log for every eval (without loading the model), and lets ``eval_set`` finish the others, reusing
their completed samples. New checkpoints matching the same glob (a run still training) are added.
A rerun with different settings into the same OUT is refused: the curves would mix settings.

Memory: ``hf/`` checkpoints and full ``vllm/`` checkpoints are loaded one at a time and released
after their evals; LoRA adapters on ``vllm/`` share one server for the whole sweep (for a shard: one
server for the shard's checkpoints).

Scale-out: OUT may be a folder or any fsspec URL (``s3://bucket/prefix``; ``emeval.logs.store``).
A sweep split into N shards (``shard_checkpoints``) runs each shard's checkpoints into the same
``OUT/logs/<label>/`` folders a single process would use, so resuming and retrying are unchanged;
every shard writes the same ``sweep.json``, and the report is made once, from all shards' logs.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
from inspect_ai.log import EvalLog, list_eval_logs, read_eval_log
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emeval.local.checkpoints import Checkpoint, model_spec, resolve, split_base
from emeval.logs import store
from emeval.logs.read import unfinished_reason
from emeval.inputs.user_files import load_document, validation_problems

SWEEP_FILE = "sweep.json"
EVALS: dict[str, str] = {
    "logprob_probes": "logprob_probes",
    "completion_logprobs": "logprob_probes",
    "free_form": "free_form",
    "deception": "deception",
    "strong_reject": "strong_reject",
    "machiavelli": "machiavelli",
}
"""Eval name -> module under ``emeval.evals`` holding its @task."""


class SweepError(ValueError):
    """A sweep that cannot run as asked (settings, checkpoints, evals), with the reason."""


class SweepSettings(BaseModel):
    """Everything that decides a sweep's numbers; stored in ``sweep.json`` and compared on resume."""

    model_config = ConfigDict(extra="forbid")
    base: str
    checkpoints: list[str] = Field(min_length=1)
    evals: list[str] = Field(min_length=1)
    task_args: dict[str, Any] = Field(default_factory=dict)
    """``name=value`` for every eval with that parameter, ``eval.name=value`` for one eval."""
    model_args: dict[str, Any] = Field(default_factory=dict)
    judge: str | None = None
    judge_args: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    limit: int | None = None
    epochs: int | None = None
    steps_from_name: str | None = None
    include_base: bool = True


@dataclass
class CheckpointRun:
    checkpoint: Checkpoint
    status: str
    """``done`` (evaluated now), ``reused`` (complete logs were there), ``failed``."""
    logs: list[str] = field(default_factory=list)
    error: str | None = None


def task_function(name: str) -> Callable[..., Any]:
    if name not in EVALS:
        raise SweepError(f"--evals: unknown eval {name!r}; emeval's evals are {', '.join(EVALS)}")
    return getattr(importlib.import_module(f"emeval.evals.{EVALS[name]}"), name)


def task_kwargs(settings: SweepSettings) -> dict[str, dict[str, Any]]:
    """Each eval's task arguments: the shared ones it takes, its own, and the sweep seed."""
    params = {name: inspect.signature(task_function(name)).parameters for name in settings.evals}
    kwargs: dict[str, dict[str, Any]] = {name: {} for name in settings.evals}
    for key, value in settings.task_args.items():
        target, _, arg = key.rpartition(".")
        names = [target] if target else [n for n in settings.evals if key in params[n]]
        if target and target not in params:
            raise SweepError(f"-T {key}: {target!r} is not one of the sweep's evals ({', '.join(settings.evals)})")
        if not names or any(arg not in params[n] for n in names):
            raise SweepError(f"-T {key}: no eval in this sweep takes a parameter {arg!r}")
        for name in names:
            kwargs[name][arg] = value
    for name in settings.evals:
        if "seed" in params[name]:
            kwargs[name].setdefault("seed", settings.seed)
    return kwargs


class SweepManifest(BaseModel):
    """``sweep.json``: written by emeval, but a file a user may edit, so read as strictly as theirs."""

    model_config = ConfigDict(extra="forbid")
    settings: SweepSettings
    checkpoints: list[Checkpoint] = Field(default_factory=list)


Location = str | Path
"""A sweep folder: a local ``Path`` or an fsspec URL as text (``emeval.logs.store.as_location``)."""


def read_manifest(out: Location) -> SweepManifest | None:
    """The sweep in ``out`` (None when there is none yet); errors name the file and the key."""
    path = store.as_location(store.join(out, SWEEP_FILE))
    if store.kind(path) != "file":
        return None
    data = load_document(path, SweepError, what="sweep manifest")
    try:
        return SweepManifest.model_validate(data)
    except ValidationError as ex:
        problems = "; ".join(validation_problems(ex, SweepManifest))
        raise SweepError(f"{path}: not an emeval sweep manifest: {problems}") from None


def load_settings(out: Location) -> SweepSettings | None:
    manifest = read_manifest(out)
    return manifest.settings if manifest else None


def resumed_settings(
    out: Location, previous: SweepSettings | None, *, base: str | None, checkpoints: list[str] | None,
    evals: list[str] | None, task_args: dict[str, Any], model_args: dict[str, Any], judge: str | None,
    judge_args: dict[str, Any], seed: int | None, limit: int | None, epochs: int | None,
    steps_from_name: str | None, include_base: bool | None,
) -> SweepSettings:
    """The settings of a sweep run into ``out``: each option as given, else the resumed sweep's
    (``previous``), else its default. Names and ``key=value`` options count as given when not empty."""
    if previous is None and (base is None or checkpoints is None):
        raise SweepError(f"{out} holds no sweep yet: give --base and --checkpoints")
    fallback = previous or SweepSettings.model_construct(base="", checkpoints=[], evals=["logprob_probes"])

    def given(value: Any, name: str) -> Any:
        return value if value is not None else getattr(fallback, name)

    return SweepSettings(
        base=base or fallback.base, checkpoints=checkpoints or fallback.checkpoints, evals=evals or fallback.evals,
        task_args=task_args or fallback.task_args, model_args=model_args or fallback.model_args,
        judge=judge or fallback.judge, judge_args=judge_args or fallback.judge_args,
        seed=given(seed, "seed"), limit=given(limit, "limit"), epochs=given(epochs, "epochs"),
        steps_from_name=given(steps_from_name, "steps_from_name"), include_base=given(include_base, "include_base"),
    )


def _check_same(out: Location, settings: SweepSettings) -> None:
    previous = load_settings(out)
    if previous is None or previous == settings:
        return
    changed = [k for k in SweepSettings.model_fields if getattr(previous, k) != getattr(settings, k)]
    raise SweepError(
        f"{out} holds a sweep with other settings ({', '.join(changed)} differ); its curves would mix them. "
        "Use a new --out, or the same settings to resume."
    )


def write_manifest(out: Location, settings: SweepSettings, checkpoints: list[Checkpoint]) -> None:
    """``sweep.json``, written whole (``emeval.logs.store.write_text``): shards of one sweep starting at
    once each write the same content, and none reads another's half-written file."""
    manifest = {
        "settings": settings.model_dump(),
        "checkpoints": [c.__dict__ for c in checkpoints],
    }
    store.write_text(store.join(out, SWEEP_FILE), json.dumps(manifest, indent=2) + "\n")


def shard_checkpoints(checkpoints: list[Checkpoint], index: int, count: int) -> list[Checkpoint]:
    """Shard ``index`` of ``count``'s part of a sweep: checkpoint k (in step order, as ``resolve`` returns
    them) goes to shard k mod ``count``, so the shards share out early and late, cheap and costly steps."""
    if count < 1 or not 0 <= index < count:
        raise SweepError(f"shard {index}/{count}: need 0 <= index < count")
    return checkpoints[index::count]


def read_checkpoints(out: Location) -> list[Checkpoint]:
    manifest = read_manifest(out)
    if manifest is None:
        raise SweepError(f"{out}: no {SWEEP_FILE} here (not a sweep folder)")
    return manifest.checkpoints


def log_dir(out: Location, checkpoint: Checkpoint) -> Location:
    return store.as_location(store.join(out, "logs", checkpoint.label))


def _task_name(log: EvalLog) -> str:
    return log.eval.task.split("/")[-1]


def latest_success_logs(folder: Location) -> dict[str, str]:
    """eval name -> newest successful log in ``folder`` (headers only)."""
    found: dict[str, tuple[str, str]] = {}
    if store.kind(folder) != "directory":
        return {}
    for info in list_eval_logs(str(folder)):
        header = read_eval_log(info, header_only=True)
        if header.status != "success":
            continue
        name = _task_name(header)
        if name not in found or header.eval.created > found[name][0]:
            found[name] = (header.eval.created, _local_path(info.name))
    return {name: location for name, (_, location) in found.items()}


def unfinished_logs(out: Location) -> list[str]:
    """``<log>: status 'error': <why>`` for each log of the sweep whose run did not finish and that no
    successful log of the same eval and checkpoint replaces (its checkpoint is missing from the curves)."""
    found = []
    for checkpoint in read_checkpoints(out):
        folder = log_dir(out, checkpoint)
        if store.kind(folder) != "directory":
            continue
        finished = latest_success_logs(folder)
        for info in list_eval_logs(str(folder)):
            header = read_eval_log(info, header_only=True)
            reason = unfinished_reason(header)
            if reason is not None and _task_name(header) not in finished:
                found.append(f"{_local_path(info.name)}: {reason}")
    return found


def _local_path(name: str) -> str:
    """Inspect lists local logs as ``file://`` URIs: kept as plain paths (a store URL stays as it is)."""
    return unquote(urlparse(name).path) if name.startswith("file:") else name


def run_sweep(
    settings: SweepSettings,
    out: Location,
    *,
    display: str = "none",
    retry_attempts: int = 3,
    progress: Callable[[str], None] = lambda message: None,
    shard: tuple[int, int] = (0, 1),
) -> list[CheckpointRun]:
    """Evaluate every checkpoint (resuming), and return what happened to each.

    ``shard``: (index, count) -- evaluate only this shard's checkpoints (``shard_checkpoints``);
    ``sweep.json`` still lists them all, so every shard writes the same one."""
    from inspect_ai import eval_set
    from inspect_ai.model import get_model

    _check_same(out, settings)
    found = resolve(
        settings.base, settings.checkpoints, steps_from_name=settings.steps_from_name, include_base=settings.include_base
    )
    kwargs = task_kwargs(settings)
    checkpoints = shard_checkpoints(found, *shard)
    write_manifest(out, settings, found)
    provider, _ = split_base(settings.base)
    judge = get_model(settings.judge, memoize=False, **settings.judge_args) if settings.judge else None
    specs = {c.label: model_spec(settings.base, c, settings.model_args) for c in checkpoints}
    # The base and its adapters share one vLLM server: build them all before the first request (so the
    # server starts with LoRA enabled and the largest adapter rank) and keep it up for the whole sweep.
    shared = provider == "vllm" and any(c.kind in ("adapter", "served") for c in checkpoints)
    keep = {c.label: get_model(specs[c.label][0], memoize=False, **specs[c.label][1])
            for c in checkpoints if shared and c.kind in ("base", "adapter", "served")}
    runs: list[CheckpointRun] = []
    try:
        for checkpoint in checkpoints:
            folder = log_dir(out, checkpoint)
            existing = latest_success_logs(folder)
            if all(name in existing for name in settings.evals):
                progress(f"step {checkpoint.step} ({checkpoint.label}): complete logs found, skipped")
                runs.append(CheckpointRun(checkpoint, "reused", [existing[n] for n in settings.evals]))
                continue
            progress(f"step {checkpoint.step} ({checkpoint.label}): evaluating {', '.join(settings.evals)}")
            name, args = specs[checkpoint.label]
            model = keep.get(checkpoint.label) or get_model(name, memoize=False, **args)
            try:
                tasks = [task_function(n)(**kwargs[n]) for n in settings.evals]
                success, logs = eval_set(
                    tasks,
                    log_dir=str(folder),
                    model=model,
                    model_roles={"grader": judge} if judge else None,
                    seed=settings.seed,
                    limit=settings.limit,
                    epochs=settings.epochs,
                    retry_attempts=retry_attempts,
                    display=display,  # type: ignore[arg-type]
                )
                failures = [log for log in logs if log.status != "success"]
                error = "; ".join(f"{_local_path(log.location)}: {unfinished_reason(log)}" for log in failures)
                status = "done" if success else "failed"
                runs.append(CheckpointRun(checkpoint, status, [log.location for log in logs], error or None))
            except Exception as ex:  # one broken checkpoint must not lose the others' results
                runs.append(CheckpointRun(checkpoint, "failed", [], f"{type(ex).__name__}: {ex}"))
            finally:
                if checkpoint.label not in keep:
                    _close(model)
    finally:
        for model in keep.values():
            _close(model)
        if judge is not None:
            _close(judge)
    return runs


def _close(model: Any) -> None:
    """Release a model's client or weights. Through ``aclose``: HTTP providers (an ``openai-api/``
    judge, a served ``vllm/`` adapter) refuse the sync ``close``; the others' ``aclose`` calls it."""
    from inspect_ai._util._async import run_coroutine

    run_coroutine(model.api.aclose())


def sample_values(out: Location, defined_only: bool = True) -> pd.DataFrame:
    """One row per checkpoint x eval x scored sample x metric, from each checkpoint's newest successful logs.

    Read through ``emeval.logs.frame.samples_frame`` (the project's one reader of logs).
    ``defined_only``: the metrics the curves are made of (``defined_values``). ``defined_only=False``
    returns the samples frame as read (NaN and unscored rows kept, metrics as the scorers name them),
    plus step and checkpoint: what the "no measurable result" check reads, and what a caller that
    needs both passes to ``defined_values`` rather than reading the logs twice.
    """
    from emeval.logs.frame import samples_frame

    parts = []
    for checkpoint in read_checkpoints(out):
        logs = list(latest_success_logs(log_dir(out, checkpoint)).values())
        if logs:
            parts.append(samples_frame(logs).assign(step=checkpoint.step, checkpoint=checkpoint.label))
    if not parts:
        return pd.DataFrame(columns=_value_columns())
    frame = pd.concat(parts, ignore_index=True)
    return defined_values(frame) if defined_only else frame


def _value_columns() -> list[str]:
    from emeval.logs.frame import SAMPLE_COLUMNS

    return ["step", "checkpoint", "sample", *SAMPLE_COLUMNS]


def defined_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``sample_values(out, defined_only=False)`` the curves are made of. Metrics are
    the numeric entries of each score value (``p_misaligned``, ``misaligned``, ``aligned``...), named
    as they are for an eval's first scorer and ``<scorer>.<key>`` for any other. NaN entries (e.g.
    ``misaligned`` of an incoherent answer) are dropped, exactly as the evals' own metrics drop them."""
    columns = _value_columns()
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame[frame["metric"].notna() & frame["value"].notna()].copy()
    first = frame.groupby("eval", sort=False)["scorer"].first()
    qualified = frame["scorer"] != frame["eval"].map(first)
    frame.loc[qualified, "metric"] = frame.loc[qualified, "scorer"] + "." + frame.loc[qualified, "metric"]
    frame["sample"] = frame["sample_id"].astype(str) + "#" + frame["epoch"].astype(str)
    return frame[columns].reset_index(drop=True)
