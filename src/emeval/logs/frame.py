"""Inspect logs -> tidy pandas frames, and per-group summaries with confidence intervals.

Why one module: reports, comparisons and the nightly history are all computed from the logs (the
only record of a run). They read them here, through ``inspect_ai.analysis.samples_df``, into one
long frame (one row per answer x score key), so every number downstream is a plain pandas
aggregation that can be recomputed by hand from ``samples.csv``.

Statistics (``emeval.stats.bootstrap``, documented in docs/reports.md): a group holds one or more models.
With two or more, its value is the EM paper's: the mean of the per-model rates, with a 95% CI
from bootstrapping those rates (``models (paper)``). With one model, its value is that model's
rate, with a CI that resamples its questions, then the answers within them
(``questions+answers``; ``answers`` when it answered one question). The answer-level CI is
reported beside it (``answers_ci_low``/``answers_ci_high``), labelled, for describing this sample.

A model is its name plus the weights it loaded (``model_id``): every local checkpoint is called
``hf/local``, its path lives in the eval's model args, so two checkpoints are two models. An eval
is its task name, qualified by the question set (``free_form[preregistered]``) when logs of one
task were run on different question sets, so different questions are never pooled.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from inspect_ai.analysis import EvalColumn, SampleColumn, samples_df
from inspect_ai.log import EvalLog, EvalSample, list_eval_logs, read_eval_log
from inspect_ai.scorer import CORRECT, INCORRECT, NOANSWER, PARTIAL, value_to_float

from emeval.logs.store import as_location, kind  # a sharded run's store may be a URL
from emeval.logs.read import LogError, read_log, rejudged_source
from emeval.stats import bootstrap as stats

SAMPLE_COLUMNS = [
    "log", "eval", "dataset", "model", "model_id", "group", "run_id", "eval_id", "created", "trigger",
    "sample_id", "epoch", "question_id", "question", "answer", "error",
    "scorer", "metric", "value", "category", "judge_model", "judge_method", "judge_prompts",
]
"""Columns of ``samples_frame`` (and ``samples.csv``), in order."""

SUMMARY_KEYS = ("scorer", "metric")
"""Always part of a summary's grouping: one row per score key of one scorer."""

CLUSTER = "model_id"
"""What a model is when a group holds several (the paper's unit: one rate per model)."""

MODEL_PATH_ARGS = ("model_path", "model_name_or_path", "pretrained", "checkpoint", "checkpoint_path")
"""Model args that name the weights a provider loaded (``hf/local`` -M model_path=...)."""

QUESTION_SET_ARG = "questions"
"""The task arg that picks an eval's question set."""


# -- which files -----------------------------------------------------------------------------------


def log_paths(logs: Iterable[str | Path]) -> list[Path | str]:
    """Files named directly, plus every Inspect log (.eval, or .json named like a log) under the
    directories named; a path that does not exist is an error naming it. A log store URL
    (``s3://bucket/prefix``: a sharded run's store) is read through fsspec and kept as its text."""
    found: list[Path | str] = []
    for item in logs:
        path = as_location(item)
        where = kind(path)
        if where == "directory":
            inside = sorted(as_location(info.name) for info in list_eval_logs(str(path)))  # all URLs or all Paths
            if not inside:
                raise LogError(f"{path}: no Inspect logs (.eval or .json) in this directory")
            found.extend(inside)
        elif where == "file":
            found.append(path)
        else:
            raise LogError(f"{path}: no such log file or directory")
    return list(dict.fromkeys(found))


# -- reading one log -------------------------------------------------------------------------------


def _short_task(name: str) -> str:
    return name.split("/", 1)[-1]


def _question_text(sample: EvalSample) -> str | None:
    metadata = sample.metadata or {}
    for key in ("question", "forbidden_prompt", "game"):
        if isinstance(metadata.get(key), str):
            return metadata[key]
    return sample.input if isinstance(sample.input, str) else None


def _question_id(sample: EvalSample) -> str | None:
    """What "per question" means for this sample: its question id (free-form, deception), else its
    dataset category (StrongREJECT) or game (MACHIAVELLI); None falls back to the sample id."""
    metadata = sample.metadata or {}
    for key in ("question_id", "category", "game"):
        if metadata.get(key) is not None:
            return str(metadata[key])
    return None


def _answer_text(sample: EvalSample) -> str | None:
    if sample.output and sample.output.choices:
        return sample.output.completion
    for score in (sample.scores or {}).values():
        if score.answer:
            return score.answer
    return None


_LETTER_GRADES = {CORRECT, INCORRECT, PARTIAL, NOANSWER}
_to_float = value_to_float()


def _number(value: Any) -> float:
    """A score value as a number: numbers and booleans as they are, Inspect's letter grades
    (C / I / P / N) as Inspect reads them, anything else (free text) NaN."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str) and value in _LETTER_GRADES:
        return _to_float(value)
    return math.nan


def _judge_fields(metadata: Mapping[str, Any] | None) -> dict[str, str | None]:
    judge = (metadata or {}).get("judge")
    if not isinstance(judge, Mapping):
        return {"judge_model": None, "judge_method": None, "judge_prompts": None}
    prompts = judge.get("prompts") or {}
    hashes = " ".join(f"{name}:{p.get('sha256', '')[:16]}" for name, p in prompts.items() if isinstance(p, Mapping))
    return {"judge_model": judge.get("model"), "judge_method": judge.get("method"), "judge_prompts": hashes or None}


def _scores_json(sample: EvalSample) -> str:
    """Each scorer's value keys (numbers only), category and judge identity, as JSON text:
    a ``samples_df`` column holds scalars, the frame is exploded from this afterwards."""
    out = []
    for scorer, score in (sample.scores or {}).items():
        value = score.value if isinstance(score.value, Mapping) else {scorer: score.value}
        metadata = score.metadata or {}
        out.append({
            "scorer": scorer,
            "values": {str(k): _number(v) for k, v in value.items()},
            "category": metadata.get("category"),
            **_judge_fields(metadata),
        })
    return json.dumps(out)


_READ_COLUMNS = [
    EvalColumn("task", path="eval.task", required=True),
    EvalColumn("model", path="eval.model", required=True),
    EvalColumn("run_id", path="eval.run_id", required=True),
    EvalColumn("created", path="eval.created", required=True),
    EvalColumn("dataset", path="eval.dataset.name"),
    SampleColumn("id", path="id", required=True, type=str),
    SampleColumn("epoch", path="epoch", required=True),
    SampleColumn("question_id", path=_question_id, full=True),
    SampleColumn("sample_trigger", path="metadata.trigger", full=True),
    SampleColumn("question", path=_question_text, full=True),
    SampleColumn("answer", path=_answer_text, full=True),
    SampleColumn("error_text", path=lambda s: s.error.message if s.error else "", full=True),
    SampleColumn("scores_json", path=_scores_json, full=True),
]


def model_id(header: EvalLog) -> str:
    """The model's name, plus the path of its weights where the model args name one
    (``hf/local:/ckpt/step-500``): the provider name alone cannot tell local checkpoints apart."""
    args = header.eval.model_args or {}
    path = next((args[k] for k in MODEL_PATH_ARGS if args.get(k)), None)
    return f"{header.eval.model}:{path}" if path else header.eval.model


def _trigger(header: EvalLog) -> str | None:
    value = (header.eval.metadata or {}).get("trigger") or (header.eval.task_args or {}).get("trigger")
    return str(value) if value else None


def _read_one(path: Path | str) -> tuple[EvalLog, pd.DataFrame]:
    header = read_log(path, header_only=True)  # names the file if it is no log at all
    try:
        # samples_df only takes a path named like an Inspect log (``<date>_<task>_<id>.json``); a
        # renamed .json log (``baseline.json``) is read whole here (as samples_df would) and passed in.
        source = str(path) if str(path).endswith(".eval") else read_eval_log(str(path), exclude_fields={"events"})
        wide = _wide(source)
    except Exception as ex:  # a corrupt sample body, a truncated zip member...
        raise LogError(f"{path}: samples could not be read ({type(ex).__name__}: {ex})") from ex
    return header, _tidy(header, wide, path)


def answers_frame(log: EvalLog) -> pd.DataFrame:
    """One log already in memory (with its samples) -> the tidy frame ``read_logs`` gives for its
    file (``SAMPLE_COLUMNS``), answers in the log's own order.

    For readers that hold the log anyway (the audit's runs, judge agreement): their numbers come
    from the same conversion as every report's (``_number``: free text is NaN, never 0)."""
    return _tidy(log, _wide(log), log.location or f"{log.eval.task} ({log.eval.model})")


def _wide(source: str | EvalLog) -> pd.DataFrame:
    """Inspect's ``samples_df`` of a log file or a log in memory: one row per answer, ``_READ_COLUMNS``."""
    return samples_df(source, columns=_READ_COLUMNS, quiet=True, exclude_fields={"events"})


def _tidy(header: EvalLog, wide: pd.DataFrame, where: Path | str) -> pd.DataFrame:
    """One log's ``_wide`` frame -> one row per answer x score key; an errored or unscored answer
    keeps one row with no metric, so it is counted, never silently lost."""
    expected = header.results.completed_samples if header.results else 0
    if wide.empty and expected:
        raise LogError(f"{where}: the header reports {expected} samples but none could be read"
                       " (was it run with --no-log-samples?)")
    rows: list[dict[str, Any]] = []
    trigger = _trigger(header)
    identity = model_id(header)
    for record in wide.to_dict("records"):
        base = {
            "log": str(where),
            "eval": _short_task(record["task"]),
            "dataset": record.get("dataset"),
            "model": record["model"],
            "model_id": identity,
            "group": record["model"],
            "run_id": record["run_id"],
            "eval_id": record["eval_id"],
            "created": str(record["created"]),
            "trigger": _clean(record.get("sample_trigger")) or trigger,
            "sample_id": str(record["id"]),
            "epoch": int(record["epoch"]),
            "question_id": _clean(record.get("question_id")) or str(record["id"]).split(":")[0],
            "question": _clean(record.get("question")),
            "answer": _clean(record.get("answer")),
            "error": _clean(record.get("error_text")) or "",
        }
        scores = json.loads(record["scores_json"]) if _clean(record.get("scores_json")) else []
        if not scores:  # errored or unscored: kept as one row so it is counted, never silently lost
            rows.append({**base, "scorer": None, "metric": None, "value": math.nan, "category": None,
                         "judge_model": None, "judge_method": None, "judge_prompts": None})
        for entry in scores:
            extra = {k: entry.get(k) for k in ("category", "judge_model", "judge_method", "judge_prompts")}
            for metric, value in entry["values"].items():
                rows.append({**base, "scorer": entry["scorer"], "metric": metric, "value": value, **extra})
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def _clean(value: Any) -> Any:
    """pandas' missing markers (None, NaN, NA) as None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


# -- groups ----------------------------------------------------------------------------------------


def as_glob(pattern: str) -> str:
    """A pattern without glob characters matches as a substring (``insecure`` = ``*insecure*``)."""
    return pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"


def group_of(model: str, log: str, groups: Mapping[str, str] | None, identity: str | None = None) -> str:
    """The first group whose glob pattern matches the model name, its ``model_id`` (name:weights
    path), the log path or its file name; the model name itself when none does (so an ungrouped
    model stays visible, alone)."""
    texts = (model, identity or model, log, Path(log).name)
    for name, pattern in (groups or {}).items():
        if any(fnmatch.fnmatchcase(text, as_glob(pattern)) for text in texts):
            return name
    return model


def assign_groups(samples: pd.DataFrame, groups: Mapping[str, str] | None) -> pd.DataFrame:
    """A copy of ``samples`` with ``group`` set from NAME -> glob pattern (see ``group_of``)."""
    out = samples.copy()
    keys = list(zip(out["model"], out["log"], out["model_id"], strict=True))
    lookup = {key: group_of(key[0], key[1], groups, key[2]) for key in dict.fromkeys(keys)}
    out["group"] = [lookup[key] for key in keys]
    return out


def parse_groups(options: Iterable[str]) -> dict[str, str]:
    """``--group NAME=PATTERN`` options -> {NAME: PATTERN}, in the order given."""
    groups: dict[str, str] = {}
    for option in options:
        name, sep, pattern = option.partition("=")
        if not sep or not name.strip() or not pattern.strip():
            raise ValueError(f"--group {option!r}: expected NAME=PATTERN, e.g. insecure='*insecure*'")
        if name.strip() in groups:
            raise ValueError(f"--group {name.strip()!r} given twice")
        groups[name.strip()] = pattern.strip()
    return groups


def group_order(samples: pd.DataFrame, groups: Mapping[str, str] | None = None) -> list[str]:
    """Groups in the order they were named, then the ungrouped models alphabetically."""
    present = set(samples["group"].dropna())
    named = [g for g in (groups or {}) if g in present]
    return named + sorted(present - set(named))


# -- reading many logs -----------------------------------------------------------------------------


@dataclass
class LogData:
    """Everything a report needs from a set of logs: the tidy samples and one header per log."""

    samples: pd.DataFrame
    headers: dict[str, EvalLog]


def read_logs(logs: Iterable[str | Path], groups: Mapping[str, str] | None = None) -> LogData:
    """Logs (files or directories) -> ``LogData``; an answer is counted once.

    Answers are identified by run and sample (eval id, sample id, epoch). A re-judged copy
    (``emeval rejudge``, header metadata ``rejudged_from``) shares its source's eval id: its extra
    judge scores join the same answers, and scores both logs hold are taken from the original."""
    frames, headers = [], {}
    paths = log_paths(logs)
    if not paths:
        raise LogError("no logs given")
    for path in paths:
        header, frame = _read_one(path)
        headers[str(path)] = header
        frames.append(frame)
    # originals first, so a score both an original and its re-judged copy hold is the original's
    frames.sort(key=lambda f: bool(len(f)) and rejudged_source(headers[f["log"].iat[0]]) is not None)
    samples = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SAMPLE_COLUMNS)
    samples = _count_answers_once(samples, headers)
    samples = _answer_order(samples)
    samples["eval"] = samples["log"].map(eval_keys(headers))
    samples["epoch"] = samples["epoch"].astype(int)
    samples["value"] = samples["value"].astype(float)
    return LogData(assign_groups(samples, groups), headers)


def _answer_order(samples: pd.DataFrame) -> pd.DataFrame:
    """Answers in Inspect's own order within a log, (epoch, sample id; numeric ids as numbers), whatever
    logs they came from: a run read from its shards' logs (any number, listed in any order) gives every
    bootstrap the same answers in the same order as the run read from one log, hence the same CI."""
    def key(column: pd.Series) -> pd.Series:
        return column.map(lambda s: s.zfill(20) if s.isdigit() else s) if column.name == "sample_id" else column

    return samples.sort_values(["epoch", "sample_id"], kind="stable", key=key).reset_index(drop=True)



def _count_answers_once(samples: pd.DataFrame, headers: Mapping[str, EvalLog]) -> pd.DataFrame:
    """Drop repeated (answer, score key) rows; a re-judged copy's rows count under its source log."""
    source_of = {}
    for path, header in headers.items():
        source = rejudged_source(header)
        if source is None:
            continue
        originals = [p for p, h in headers.items() if p != path and rejudged_source(h) is None
                     and h.eval.eval_id == source.get("eval_id")]
        if originals:
            source_of[path] = originals[0]
    samples = samples.copy()
    samples["log"] = samples["log"].map(lambda p: source_of.get(p, p))
    identity = ["eval_id", "sample_id", "epoch", "scorer", "metric"]
    return samples[~samples[identity].astype(str).duplicated()].reset_index(drop=True)


def _question_set_label(value: Any) -> str:
    if isinstance(value, str):
        return Path(value).stem if value.endswith((".yaml", ".yml", ".json", ".jsonl", ".csv")) else value
    return json.dumps(value, sort_keys=True, default=str)


def eval_keys(headers: Mapping[str, EvalLog]) -> dict[str, str]:
    """Log path -> the eval it counts under: the short task name, or ``task[question set]`` when
    logs of that task were run on different question sets (task arg ``questions``), so that their
    answers are summarised apart. A question set given as a file is labelled by its stem, or by its
    full path where two files share a stem."""
    task = {path: _short_task(h.eval.task) for path, h in headers.items()}
    chosen = {path: (h.eval.task_args or {}).get(QUESTION_SET_ARG) for path, h in headers.items()}
    keys = dict(task)
    for name in set(task.values()):
        mine = [path for path in task if task[path] == name]
        values = {json.dumps(chosen[p], sort_keys=True, default=str): chosen[p] for p in mine}
        if len(values) < 2:
            continue
        labels = {text: _question_set_label(value) for text, value in values.items()}
        if len(set(labels.values())) < len(labels):  # two files with one stem: the full value
            labels = {text: str(value) for text, value in values.items()}
        for path in mine:
            keys[path] = f"{name}[{labels[json.dumps(chosen[path], sort_keys=True, default=str)]}]"
    return keys


def samples_frame(logs: list[Path | str], groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Logs (files or directories) -> one row per sample x epoch x score key.

    Columns: ``SAMPLE_COLUMNS``. ``value`` is the score key's number (NaN where it does not apply,
    e.g. ``misaligned`` for an incoherent answer). A sample with no score (an error) has one row
    with empty ``metric`` and its ``error``. ``group`` is the model name unless ``groups`` (NAME ->
    glob on model name or log path) says otherwise. A file that is not a readable log raises
    ``LogError`` naming it."""
    return read_logs(logs, groups).samples


# -- summaries -------------------------------------------------------------------------------------


def cluster_column(frame: pd.DataFrame) -> str:
    """``model_id`` (name + weights path); ``model`` for a frame built without it."""
    return CLUSTER if CLUSTER in frame.columns else "model"


def summary_frame(
    samples: pd.DataFrame,
    by: Sequence[str] = ("eval", "group"),
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
    level: float = stats.LEVEL,
) -> pd.DataFrame:
    """Per ``by`` x scorer x metric: ``SUMMARY_COLUMNS`` (``stats.group_estimate`` of the cell).

    ``mean``/``ci_low``/``ci_high`` are the headline, ``ci_method`` says what its CI resampled:
    ``models (paper)`` for several models, ``questions+answers`` (or ``answers``, one question)
    for one; ``answers_*`` are the answer-level figures, for describing this sample only."""
    keys = list(dict.fromkeys([*by, *SUMMARY_KEYS]))
    missing = [k for k in keys if k not in samples.columns]
    if missing:
        raise KeyError(f"summary_frame: no column {', '.join(missing)} in the samples frame")
    scored = samples[samples["metric"].notna()]
    rows = []
    for key, cell in scored.groupby(keys, sort=False, dropna=False):
        cluster = cluster_column(cell)
        estimate = stats.group_estimate(cell, model=cluster, resamples=resamples, seed=seed, level=level)
        defined = cell.dropna(subset=["value"])
        models = sorted(defined[cluster].unique()) if len(defined) else sorted(cell[cluster].unique())
        rows.append({
            **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
            **estimate,
            "models": ", ".join(models),
        })
    return pd.DataFrame(rows, columns=[*keys, *SUMMARY_COLUMNS])


SUMMARY_COLUMNS = ["n", "n_models", "models", "mean", "ci_low", "ci_high", "ci_method",
                   "answers_mean", "answers_ci_low", "answers_ci_high", "n_models_excluded"]
"""What ``summary_frame`` gives per cell, after its grouping keys."""


def answer_level(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the answer-level figures as its estimate (``ci_method`` ``answers``): for
    comparing the same models on the same questions over time (nightly), where the noise between
    two runs is that of sampling their answers, and neither the questions nor the models change."""
    out = summary.copy()
    out["mean"], out["ci_low"], out["ci_high"] = out["answers_mean"], out["answers_ci_low"], out["answers_ci_high"]
    out["ci_method"] = stats.CI_ANSWERS
    return out
