"""Running one night: an Inspect ``eval_set`` per eval x group, in ``<log_dir>/<night>/<eval>/<group>/``.

``log_dir`` is a local folder or any fsspec URL (``s3://bucket/prefix``: ``emeval.logs.store``), so the
shards of a night on machines without a shared disk all write into one store the merge step reads.

Why one eval set per eval x group rather than one for everything: each eval has its own task
args (Inspect's ``task_args`` apply to every task of a set), and the group goes into the logs'
metadata (``emeval_nightly``), so every log says which night, eval and group it belongs to.
Because each set has its own folder, rerunning a night resumes it: finished logs are reused and
unfinished ones continue from their completed samples (Inspect's eval_set behaviour).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from inspect_ai import eval_set
from inspect_ai.log import EvalLog, list_eval_logs, read_eval_log
from inspect_ai.model import Model, get_model

from emeval.logs.read import rejudged_source
from emeval.logs.store import as_location, is_url, join, kind
from emeval.shards import Shard
from emeval.nightly.config import NightlyConfig, task_name

METADATA_KEY = "emeval_nightly"
"""Eval metadata key holding {night, eval, group} in every nightly log."""


class NightRunError(RuntimeError):
    """An eval set could not be started (unknown task, bad model args, a log folder of another set)."""


@dataclass
class EvalRun:
    """The logs of one eval x group on one night."""

    eval: str
    task: str
    group: str
    logs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class NightRunResult:
    night: str
    night_dir: str
    """``<log_dir>/<night>``: the URL as the config gives it, or an absolute local folder."""
    runs: list[EvalRun]

    @property
    def logs(self) -> list[str]:
        return [log for run in self.runs for log in run.logs]

    @property
    def failures(self) -> list[str]:
        return [f for run in self.runs for f in run.failures]


def local_path(location: str) -> str:
    """A log location as an absolute path when it is a local file (eval_set reports reused logs as file://)."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return location if parsed.scheme else str(Path(location).absolute())


def night_location(log_dir: str, night: str) -> str:
    """``<log_dir>/<night>``: a URL kept as given (a later reader opens what the history stores), a
    local folder made absolute from the current directory (as ``inspect eval --log-dir`` reads it)."""
    root = as_location(log_dir)
    return join(root if is_url(root) else Path(root).absolute(), night)


def folder_headers(folder: str) -> dict[str, EvalLog]:
    """Location -> header of every readable log already in an eval set's folder (none before its first run)."""
    if kind(folder) != "directory":  # also drops a stale listing of a store another machine wrote to
        return {}
    headers = {}
    for info in list_eval_logs(str(folder)):
        path = local_path(info.name)
        try:
            headers[path] = read_eval_log(path, header_only=True)
        except Exception:  # a corrupt or foreign file is eval_set's to judge, and no original
            continue
    return headers


def original_of(copy: EvalLog, headers: dict[str, EvalLog]) -> str | None:
    """The path of the log a re-judged copy (``emeval rejudge``) was made from, by eval id; None if gone."""
    source = rejudged_source(copy) or {}
    for path, header in headers.items():
        if header.eval.eval_id == source.get("eval_id") and rejudged_source(header) is None:
            return path
    return None


def build_models(config: NightlyConfig, wanted: set[str]) -> tuple[dict[str, list[Model]], dict[str, Model]]:
    """(subject models of the ``wanted`` groups, {role: judge model}); errors name the model entry.
    Only the groups a run needs: building a model may load its weights or start its server."""
    groups: dict[str, list[Model]] = {}
    for i, spec in enumerate(config.models):
        if spec.group not in wanted:
            continue
        try:
            model = get_model(spec.inspect_name, **spec.inspect_args)
        except Exception as ex:
            raise NightRunError(f"models.{i} ({spec.label}): cannot create the model: {ex}") from ex
        groups.setdefault(spec.group, []).append(model)
    try:
        judge = get_model(config.judge.model, **config.judge.args)
    except Exception as ex:
        raise NightRunError(f"judge ({config.judge.model}): cannot create the model: {ex}") from ex
    return groups, {config.judge.role: judge}


def night_units(config: NightlyConfig) -> list[tuple[str, str]]:
    """The night's (eval, group) units in config order: what a shard of the night is cut from."""
    return [(spec.key, group) for spec in config.evals for group in config.groups]


def run_night(config: NightlyConfig, night: str, shard: Shard | None = None, collect_only: bool = False) -> NightRunResult:
    """Run (or resume) every eval x group of the config for ``night``.

    ``shard``: run only the units ``i, i + N, ...`` of ``night_units`` (whole eval x group units, dealt
    round robin); the other shards run the rest, each into its own folders of the same night.
    ``collect_only``: run nothing; read the logs the shards left (the merge step). A unit with no log,
    or one that did not finish, is a failure naming it: its shard has to run (again) first.
    """
    night_dir = night_location(config.log_dir, night)
    units = night_units(config)
    mine = set(units[shard.index::shard.count]) if shard is not None else set(units)
    models, roles = build_models(config, {group for _, group in mine}) if not collect_only else ({}, {})
    options: dict[str, Any] = dict(config.eval_set)
    if "display" not in options and not sys.stdout.isatty():
        options["display"] = "plain"  # cron and CI logs: no live terminal display
    runs = []
    for spec in config.evals:
        for group in config.groups:
            if (spec.key, group) not in mine:
                continue
            run = EvalRun(eval=spec.key, task=task_name(spec.task), group=group)
            folder = join(night_dir, spec.key, group)
            existing = folder_headers(folder)
            set_options = dict(options)
            if any(rejudged_source(h) is not None for h in existing.values()):
                # eval_set takes a task's newest log as its run and deletes the older ones: with a re-judged
                # copy beside its original, one of the two would be deleted. Keep both; the original counts.
                set_options["retry_cleanup"] = False
            if collect_only:  # the merge step: the logs the shards left, as they are
                logs = list(existing.values())
                for path, log in existing.items():
                    log.location = path
                if not logs:
                    run.failures.append(f"{spec.key}/{group}: no log in {folder}: the shard that runs it has not run")
            else:
                try:
                    _, logs = eval_set(
                        tasks=spec.task,
                        task_args=spec.args,
                        model=models[group],
                        model_roles=roles,
                        log_dir=folder,
                        metadata={METADATA_KEY: {"night": night, "eval": spec.key, "group": group}},
                        **set_options,
                    )
                except Exception as ex:
                    raise NightRunError(
                        f"eval {spec.key!r} ({spec.task}), group {group!r}: {type(ex).__name__}: {ex}") from ex
            for log in logs:
                if rejudged_source(log) is not None:  # the night is what the config ran: the original log
                    original = original_of(log, existing)
                    if original is None:
                        run.failures.append(
                            f"{spec.key}/{group}/{log.eval.model}: {local_path(log.location)} is a re-judged copy "
                            "whose original log is not in the folder; move the copy out of the night's folder")
                        continue
                    log = existing[original]
                    log.location = original
                run.logs.append(local_path(log.location))
                if log.status != "success":
                    reason = log.error.message if log.error else log.status
                    run.failures.append(f"{spec.key}/{group}/{log.eval.model}: {log.status}: {reason} ({run.logs[-1]})")
            runs.append(run)
    return NightRunResult(night=night, night_dir=night_dir, runs=runs)
