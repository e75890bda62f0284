"""Reading Inspect logs back, with errors that name the file, and judge scores out of them.

Every emeval command that reads a log reads it through ``read_log``, which refuses a log whose run
did not finish (status ``error``, ``cancelled``, or left ``started``): its numbers would be those of
a partial run, and ``inspect eval`` can exit 0 with such a log. The refusal names the log and the
reason, and the command exits non-zero. ``emeval summary`` alone shows such a log (to diagnose it)
and still exits non-zero. Re-judging and judge agreement also read which judge scorers a log holds,
which model each one used, and with what options; every reader of a log's aggregate (header)
metrics takes them from ``header_metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inspect_ai.log import EvalLog, read_eval_log
from inspect_ai.log._log import EvalScorer  # not re-exported by inspect_ai.log

PRIMARY_JUDGE = "alignment_judge"
"""The grader-role judge of every free-form run; extra judges are ``judge_<model slug>``."""


REJUDGED_FROM = "rejudged_from"
"""Header metadata key naming a re-judged log's source (its path, eval id and run id)."""


class LogError(ValueError):
    """A log cannot be used as asked (unreadable, unfinished, not a free-form log, no such scorer)."""


class UnfinishedLogError(LogError):
    """A log whose run ended in error, was cancelled, or never finished."""


UNFINISHED_WHY = {
    "started": "the run never finished (interrupted, killed, or still running)",
    "cancelled": "the run was cancelled",
}


def unfinished_reason(log: EvalLog) -> str | None:
    """Why ``log`` is not a finished run (``status 'error': <message>``), or None when it is one."""
    if log.status == "success":
        return None
    why = log.error.message.strip() if log.error and log.error.message else UNFINISHED_WHY.get(log.status, "")
    if len(why) > 500:
        why = why[:500] + "..."
    return f"status {log.status!r}" + (f": {why}" if why else "")


def require_finished(log: EvalLog, source: str | Path) -> EvalLog:
    """``log`` itself, or an ``UnfinishedLogError`` naming ``source`` and why its run did not finish."""
    reason = unfinished_reason(log)
    if reason is not None:
        raise UnfinishedLogError(
            f"{source}: the run did not finish ({reason}); its numbers would be partial. "
            "Resume it (inspect eval-retry, or rerun the eval set) or leave the log out."
        )
    return log


def read_log(path: str | Path, header_only: bool = False, finished: bool = True) -> EvalLog:
    """Read an Inspect log; any failure (missing, corrupt, not a log) names the file.

    ``finished`` (the default) also refuses a log whose run did not finish (``require_finished``).
    """
    from emeval.logs.store import as_location, kind

    path = as_location(path)  # a local Path, or a log store URL as it is (s3://...)
    if kind(path) != "file":
        raise LogError(f"{path}: no such log file")
    try:
        log = read_eval_log(str(path), header_only=header_only)
    except Exception as ex:  # zip, JSON and validation errors all mean "not a usable log"
        raise LogError(f"{path}: not a readable Inspect log ({type(ex).__name__}: {ex})") from ex
    return require_finished(log, path) if finished else log


def is_judge_scorer(name: str) -> bool:
    return name == PRIMARY_JUDGE or name.startswith("judge_")


def judge_scorer_names(log: EvalLog) -> list[str]:
    """The judge scorers of a log, in the order they were run (the primary judge first)."""
    names = [s.name for s in log.eval.scorers or []]
    if not names and log.results:  # older logs may only record results
        names = [s.name for s in log.results.scores]
    return list(dict.fromkeys(n for n in names if is_judge_scorer(n)))


def recorded_scorer(log: EvalLog, name: str, source: str | Path) -> EvalScorer:
    """The constructor options a scorer was run with (the last one of that name)."""
    for spec in reversed(log.eval.scorers or []):
        if spec.name == name:
            return spec
    found = ", ".join(s.name for s in log.eval.scorers or []) or "none"
    raise LogError(f"{source}: no scorer {name!r} recorded in this log (scorers: {found})")


def require_free_form(log: EvalLog, source: str | Path) -> EvalScorer:
    """The primary judge's recorded scorer; a clear error for logs of other tasks."""
    names = [s.name for s in log.eval.scorers or []]
    if PRIMARY_JUDGE not in names:
        raise LogError(
            f"{source}: not a free-form judge log (task {log.eval.task!r}, scorers: "
            f"{', '.join(names) or 'none'}); re-judging needs the {PRIMARY_JUDGE!r} scorer"
        )
    return recorded_scorer(log, PRIMARY_JUDGE, source)


def judge_model(log: EvalLog, name: str) -> str | None:
    """The model behind a judge scorer: the grader role for the primary judge, else its option."""
    if name == PRIMARY_JUDGE:
        grader = (log.eval.model_roles or {}).get("grader")
        if isinstance(grader, list):
            grader = grader[0] if grader else None
        return grader.model if grader is not None else None
    for spec in reversed(log.eval.scorers or []):
        if spec.name == name:
            judge = (spec.options or {}).get("judge")
            return str(judge) if judge else None
    return None


def header_metrics(log: EvalLog) -> list[tuple[str, dict[str, Any]]]:
    """The aggregate metrics the log's header holds, as (scorer name, {metric: value}) per scored
    entry, in the order logged (a scorer may appear more than once, e.g. once per epochs reducer).

    The one place a log's ``results.scores[*].metrics`` become plain numbers: the summary table,
    the judge headline table and the audit's "evals' own metrics" all read them through here."""
    return [(score.name, {name: metric.value for name, metric in score.metrics.items()})
            for score in (log.results.scores if log.results else [])]


def scorer_metrics(log: EvalLog, name: str) -> dict[str, Any]:
    """The metrics one scorer produced (``em_summary`` and per-question rates), flat."""
    values: dict[str, Any] = {}
    for scorer, metrics in header_metrics(log):
        if scorer == name:
            values.update(metrics)
    return values


def rejudged_source(log: EvalLog) -> Mapping[str, Any] | None:
    """What a re-judged copy (``emeval rejudge``) names as its source: ``{log, eval_id, run_id}``;
    None for a log that is no re-judged copy."""
    source = (log.eval.metadata or {}).get(REJUDGED_FROM)
    return source if isinstance(source, Mapping) else None
