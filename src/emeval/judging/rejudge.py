"""Re-judge a finished free-form log with another judge, without asking the subject again.

Judge choice moves emergent-misalignment numbers, so a run is worth judging twice. Answers are
the expensive, non-reproducible part; this re-scores the answers already in a log and writes a
new log holding both judges' scores side by side, exactly as if the run had named the new judge
with ``-T judges=<model>``.
"""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any

from inspect_ai import score
from inspect_ai.log import EvalLog, write_eval_log
from inspect_ai.model import get_model
from inspect_ai.scorer import Scorer
from inspect_ai.util import DisplayType

from emeval.judging.agreement import Agreement, agreement, judge_frame, pair
from emeval.logs.store import as_location, is_url, same_location
from emeval.logs.read import PRIMARY_JUDGE, REJUDGED_FROM, LogError, judge_scorer_names, read_log, require_free_form
from emeval.sanitize.redact_hook import scrub_log
from emeval.judging.scorers import judge_scorer_name, named_alignment_judge

METHODS = ("auto", "logprob", "sampled")

def default_output(source: str | Path, judge: str) -> str | Path:
    """``<stem>-rejudged-<slug>.eval`` beside the original, in the same store (a folder or a URL)."""
    folder, _, name = str(source).rpartition("/") if is_url(source) else (None, "", Path(source).name)
    new = f"{name.rsplit('.', 1)[0]}-rejudged-{judge_scorer_name(judge)}.eval"
    return f"{folder}/{new}" if folder is not None else Path(source).with_name(new)


def drop_scorer(log: EvalLog, name: str) -> bool:
    """Remove every trace of scorer ``name`` (scores, results, reductions, header); True if any.

    Re-judging with a judge the log already holds replaces its scores: one name, one judge.
    Appending would leave ``judge_x`` next to Inspect's renamed ``judge_x-1``, and readers
    would have to guess which one counts.
    """
    found = False
    for sample in log.samples or []:
        if sample.scores and name in sample.scores:
            del sample.scores[name]
            found = True
    if log.results:
        kept = [s for s in log.results.scores if s.name != name]
        found |= len(kept) != len(log.results.scores)
        log.results.scores = kept
    if log.reductions:
        log.reductions = [r for r in log.reductions if r.scorer != name]
    if log.eval.scorers:
        kept_specs = [s for s in log.eval.scorers if s.name != name]
        found |= len(kept_specs) != len(log.eval.scorers)
        log.eval.scorers = kept_specs
    return found


def judge_scorer(name: str, options: dict[str, Any]) -> Scorer:
    """The free-form judge scorer under ``name``, built the way ``judge_scorers`` builds extras."""
    return named_alignment_judge(name)(**options)


def rejudge(
    log: str | Path,
    judge: str,
    method: str = "auto",
    out: str | Path | None = None,
    display: DisplayType = "none",
    batch: Any = None,
    **judge_model_args: Any,
) -> EvalLog:
    """Judge the answers in ``log`` again with ``judge`` and write a new log; returns it.

    The new scorer is ``judge_<model slug>`` with the primary judge's recorded options (prompts,
    thresholds, digits, draws) and ``method``; the original scores stay. A judge the log already
    holds under that name is replaced (see ``drop_scorer``). The subject is never called (the
    scoring context's model refuses to generate) and the original judge is never constructed,
    so its API key is not needed. Samples that errored in the original run are carried over
    unjudged, as the original judge left them. Judge calls go through Inspect's cache: judging
    the same answers with the same judge again costs no calls.

    ``batch`` sends the new judge's calls in Inspect's batch mode (``task_args.as_batch``: true, a
    batch size or batch settings); the original run's batch setting is not carried over (it was
    the other judge's provider's).

    ``judge_model_args`` (``base_url``, ``api_key``, ...) configure the judge model; with them it
    is handed to the scorer as the ``grader`` role for this pass only (the scorer resolves a
    judge named by string without arguments), so the recorded scorer options show no ``judge``.
    A name alone resolves its endpoint from the provider's environment variables.
    """
    source = as_location(log)  # a local Path, or a log store URL as it is (s3://...)
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    if "/" not in judge:
        raise ValueError(f"judge {judge!r} is not a model name (expected provider/model)")
    original = read_log(source)
    spec = require_free_form(original, source)
    if not original.samples:
        raise LogError(f"{source}: the log holds no samples to re-judge")
    target = as_location(out) if out is not None else default_output(source, judge)
    if same_location(target, source):
        raise LogError(f"{target}: refusing to overwrite the input log; choose another --out")

    name = judge_scorer_name(judge)
    options = {**(spec.options or {}), "method": method, "batch": batch}
    roles = None
    if judge_model_args:
        roles = {"grader": get_model(judge, **judge_model_args)}
        options.pop("judge", None)
    else:
        options["judge"] = judge

    work = deepcopy(original)
    drop_scorer(work, name)
    errored = {i: s for i, s in enumerate(work.samples or []) if s.error is not None}
    work.samples = [s for s in work.samples or [] if s.error is None]
    # the original judge is not needed and may need a key we lack: score without the header's roles
    work.eval.model_roles = None
    scored = score(
        work,
        [judge_scorer(name, options)],
        model=get_model("none"),  # the subject is never asked: this model refuses to generate
        model_roles=roles,
        action="append",
        display=display,
        copy=False,
    )
    scored.eval.model_roles = original.eval.model_roles
    # readers recognise this copy by its source and count its answers once (analysis.read_logs)
    scored.eval.metadata = {**(scored.eval.metadata or {}), REJUDGED_FROM: {
        "log": str(source), "eval_id": original.eval.eval_id, "run_id": original.eval.run_id}}
    samples = list(scored.samples or [])
    for index in sorted(errored):
        samples.insert(index, errored[index])
    scored.samples = samples

    scored = scrub_log(scored) or scored  # a judge may echo its key: the new log keeps no secret
    if not is_url(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    write_eval_log(scored, str(target))  # through fsspec: a URL target goes to its store
    scored.location = str(target)
    return scored


def holds_judge(log: str | Path, judge: str) -> str | None:
    """The scorer name ``rejudge`` gives ``judge`` when ``log`` already holds it (its scores get
    replaced in the new log), else None. Reads the header only."""
    name = judge_scorer_name(judge)
    return name if name in judge_scorer_names(read_log(log, header_only=True)) else None


def agreement_with_primary(rejudged: EvalLog, judge: str) -> Agreement:
    """How the new judge of a re-judged log agrees with the log's primary judge on the same answers."""
    name = judge_scorer_name(judge)
    frames = {PRIMARY_JUDGE: judge_frame(rejudged, PRIMARY_JUDGE), name: judge_frame(rejudged, name)}
    return agreement(pair(frames, str(rejudged.location)), PRIMARY_JUDGE, name)
