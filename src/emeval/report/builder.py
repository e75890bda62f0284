"""``emeval report``: Inspect logs -> index.html, report.md, samples.csv and summary.json.

Why this shape: every number is computed once, into pandas frames (``analysis``), then written
four ways from the same rows and the same formatter (``display``), so the HTML, the Markdown and
the JSON cannot disagree. Model output reaches the HTML only through jinja2 with autoescape on,
and the Markdown only through the ``md`` filter, so an answer is always shown as text; every
file goes through ``emeval.sanitize.safe_output`` (CSV-injection guard, invisible characters, secrets).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, UTC
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
from inspect_ai.log import EvalLog
from markupsafe import Markup

from emeval import __version__
from emeval.logs.frame import SUMMARY_KEYS, LogData, group_order, read_logs
from emeval.stats.summary import SUMMARY_COLUMNS, summary_frame
from emeval.report.compare import shown_rows, with_display
from emeval.report import plots
from emeval.report.render import render
from emeval.report.display import (
    COUNT_KEYS,
    ci_note,
    format_estimate,
    headline_keys,
    is_alignment_scorer,
    judge_label,
    judge_names,
    metric_kind,
    metric_label,
)
from emeval.sanitize.redact import redact_data
from emeval.sanitize.safe_output import plain_text, write_csv
from emeval.judging.scorers import ALIGNED_BELOW, COHERENT_ABOVE
from emeval.stats.compare import compare

TOP_ANSWERS = 50
MD_ANSWERS = 10
MAX_PLOTTED_QUESTIONS = 60
CI_METHODS = (
    "95% percentile bootstrap, 2000 resamples, seed 0; every CI says what it resampled. "
    "models (paper): a group of several models (e.g. fine-tuning seeds) is the EM paper's aggregation: "
    "each model's rate (per question, or over all its answers), the group value is the mean of those rates, "
    "and the CI resamples the models' rates (the paper's error bars). "
    "questions+answers: one model's rate, with a CI that resamples its questions, then the answers within "
    "each (the default for a claim about the model: answers to one question are not independent). "
    "answers: answers only (one question, or the answer-level figure shown beside the others), which "
    "describes this sample of answers and is too narrow for a claim about the model. "
    "Rates count only the answers they apply to (misaligned rate: coherent answers; coherent rate: judged "
    "answers); CODE, REFUSAL, unscorable answers and judge errors are counted apart."
)


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _finite(value: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _finite(v) for k, v in row.items()} for row in frame.to_dict("records")]


# -- the parts of the report -----------------------------------------------------------------------


def run_rows(data: LogData) -> list[dict[str, Any]]:
    """One row per log: what ran, on what, judged by whom, with which versions."""
    rows = []
    samples = data.samples
    for path, header in data.headers.items():
        mine = samples[samples["log"] == path]
        answers = mine.drop_duplicates(["sample_id", "epoch"])
        judges = (
            mine.dropna(subset=["scorer"])
            .groupby("scorer", sort=False)
            .agg(model=("judge_model", lambda s: ", ".join(sorted(set(s.dropna())))),
                 method=("judge_method", lambda s: ", ".join(sorted(set(s.dropna())))),
                 prompts=("judge_prompts", lambda s: ", ".join(sorted(set(s.dropna())))))
            .reset_index()
        )
        rows.append({
            "log": Path(path).name,
            "path": path,
            "eval": mine["eval"].iloc[0] if len(mine) else header.eval.task.split("/", 1)[-1],
            "dataset": header.eval.dataset.name,
            "group": mine["group"].iloc[0] if len(mine) else header.eval.model,
            "model": mine["model_id"].iloc[0] if len(mine) else header.eval.model,
            "model_revision": _model_revision(header),
            "trigger": mine["trigger"].dropna().iloc[0] if mine["trigger"].notna().any() else None,
            "created": header.eval.created,
            "status": header.status,
            "error": header.error.message if header.error else None,
            "samples": _planned(header),
            "completed": int(header.results.completed_samples) if header.results else len(answers),
            "sample_errors": int((answers["error"] != "").sum()),
            "judges": _records(judges),
            "data_revision": _data_revision(header),
            "emeval_version": (header.eval.metadata or {}).get("emeval_version") or header.eval.packages.get("emeval"),
            "inspect_version": header.eval.packages.get("inspect_ai"),
            "git_commit": header.eval.revision.commit if header.eval.revision else None,
        })
    return rows


def _planned(header: EvalLog) -> int:
    if header.results is not None:
        return int(header.results.total_samples)
    epochs = header.eval.config.epochs or 1
    return int((header.eval.dataset.samples or 0) * epochs)


def _model_revision(header: EvalLog) -> str | None:
    args = header.eval.model_args or {}
    parts = [f"{k}={args[k]}" for k in ("revision", "model_path", "base_url") if args.get(k)]
    if header.eval.model_base_url:
        parts.append(f"base_url={header.eval.model_base_url}")
    home = str(Path.home())  # a local path reads the same on every machine, and says less about this one
    return ", ".join(dict.fromkeys(p.replace(home, "~") for p in parts)) or None


def _data_revision(header: EvalLog) -> str | None:
    meta = header.eval.metadata or {}
    parts = []
    for key, value in meta.items():
        if value and (key.endswith("_revision") or key.endswith("_sha256")):
            text = str(value)
            parts.append(f"{key}={text[:12] if key.endswith('_sha256') else text}")
    return ", ".join(parts) or None


def _kinds(samples: pd.DataFrame) -> dict[tuple[str, str], str]:
    scored = samples[samples["metric"].notna()]
    return {(s, m): metric_kind(s, m, cell["value"]) for (s, m), cell in scored.groupby(["scorer", "metric"], sort=False)}


def decorate(summary: pd.DataFrame, kinds: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """Adds label, kind and the printed estimate (``display``) to a summary frame."""
    out = summary.copy()
    out["label"] = [metric_label(s, m) for s, m in zip(out["scorer"], out["metric"], strict=True)]
    out["kind"] = [kinds.get((s, m), "score") for s, m in zip(out["scorer"], out["metric"], strict=True)]
    out["display"] = [format_estimate(k, m, lo, hi) for k, m, lo, hi in
                      zip(out["kind"], out["mean"], out["ci_low"], out["ci_high"], strict=True)]
    out["ci_note"] = [ci_note(m) for m in out["ci_method"]]
    out["answers_display"] = [format_estimate(k, m, lo, hi) for k, m, lo, hi in
                              zip(out["kind"], out["answers_mean"], out["answers_ci_low"], out["answers_ci_high"], strict=True)]
    return out


def summary_tables(summary: pd.DataFrame, samples: pd.DataFrame, order: Sequence[str]) -> list[dict[str, Any]]:
    """One table per eval x scorer: a row per group, a column per headline metric."""
    tables = []
    judges = judge_names(samples)
    for (eval_name, scorer), cell in summary.groupby(["eval", "scorer"], sort=False):
        metrics = headline_keys(scorer, cell["metric"])
        rows = []
        for group in order:
            mine = cell[cell["group"] == group]
            if mine.empty:
                continue
            part = samples[(samples["eval"] == eval_name) & (samples["group"] == group) & (samples["scorer"] == scorer)]
            by_metric = mine.set_index("metric")
            rows.append({
                "group": group,
                "models": sorted(part["model_id"].unique()),
                "answers": int(part.drop_duplicates(["log", "sample_id", "epoch"]).shape[0]),
                "cells": [_records(by_metric.loc[[m]].reset_index())[0] if m in by_metric.index else None
                          for m in metrics],
            })
        tables.append({
            "eval": eval_name,
            "scorer": scorer,
            "judge": judges.get((eval_name, scorer)),
            "metrics": [{"key": m, "label": metric_label(scorer, m)} for m in metrics],
            "rows": rows,
        })
    return tables


def primary_metrics(samples: pd.DataFrame) -> dict[tuple[str, str], str]:
    """The metric plotted per question for each eval x scorer (the first headline one), for
    scorers that have question ids. Extra judges of a free-form run are left to the summary."""
    out = {}
    scored = samples[samples["metric"].notna()]
    for (eval_name, scorer), cell in scored.groupby(["eval", "scorer"], sort=False):
        if scorer.startswith("judge_"):
            continue
        keys = headline_keys(scorer, cell["metric"].unique())
        if keys:
            out[(eval_name, scorer)] = keys[0]
    return out


def per_question(samples: pd.DataFrame, kinds: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """The plotted metric of each eval x scorer, per group and question (``summary_frame``), with
    the judge its scores name (``judge``, None for scorers without one)."""
    parts = []
    for (eval_name, scorer), metric in primary_metrics(samples).items():
        rows = samples[(samples["eval"] == eval_name) & (samples["scorer"] == scorer) & (samples["metric"] == metric)]
        parts.append(summary_frame(rows, by=("eval", "group", "question_id")))
    if not parts:
        return pd.DataFrame(columns=["eval", "group", "question_id", *SUMMARY_KEYS, *SUMMARY_COLUMNS])
    out = decorate(pd.concat(parts, ignore_index=True), kinds)
    judges = judge_names(samples)
    out["judge"] = [judges.get((e, s)) for e, s in zip(out["eval"], out["scorer"], strict=True)]
    return out


def question_plots(per_q: pd.DataFrame, order: Sequence[str]) -> list[dict[str, Any]]:
    figures = []
    for (eval_name, scorer, metric), cells in per_q.groupby(["eval", "scorer", "metric"], sort=False):
        questions = cells["question_id"].nunique()
        label = judge_label(metric_label(scorer, metric), cells["judge"].iloc[0])
        kind = cells["kind"].iloc[0]
        if questions > MAX_PLOTTED_QUESTIONS:
            figures.append({"eval": eval_name, "label": label, "image": None,
                            "note": f"{questions} questions: too many to plot; see summary.json (per_question)."})
            continue
        groups = [g for g in order if g in set(cells["group"])]
        if cells["mean"].isna().all():
            figures.append({"eval": eval_name, "label": label, "image": None,
                            "note": f"No answer has a {label}: nothing to plot (see the judge-error table)."})
            continue
        plain = metric_label(scorer, metric)
        ylabel = f"probability of {plain.removesuffix(' rate')} answer" if kind == "rate" else plain
        title = f"{eval_name}: {label} per question (95% CI)"
        shown = cells.assign(question_id=cells["question_id"].map(plain_text))  # tick labels: no control characters
        fig = plots.per_question_plot(shown, groups, ylabel, title, rate=kind == "rate")
        alt = f"{eval_name}: {label} per question for groups {', '.join(groups)}"
        figures.append({"eval": eval_name, "label": label, "image": plots.figure_html(fig, alt), "note": None})
    return figures


def question_tables(per_q: pd.DataFrame, order: Sequence[str]) -> list[dict[str, Any]]:
    """The per-question numbers behind each plot: a row per question, a column per group."""
    tables = []
    for (eval_name, scorer, metric), cells in per_q.groupby(["eval", "scorer", "metric"], sort=False):
        groups = [g for g in order if g in set(cells["group"])]
        rows = []
        for question, mine in cells.groupby("question_id", sort=False):
            by_group = {r["group"]: r for r in _records(mine)}
            rows.append({"question_id": question, "cells": [by_group.get(g) for g in groups]})
        tables.append({"eval": eval_name, "scorer": scorer, "metric": metric,
                       "label": judge_label(metric_label(scorer, metric), cells["judge"].iloc[0]),
                       "groups": groups, "rows": rows})
    return tables


def _pivot_answers(samples: pd.DataFrame, scorer: str) -> pd.DataFrame:
    rows = samples[samples["scorer"] == scorer]
    keys = ["log", "sample_id", "epoch"]
    wide = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc="first", dropna=False)
    info = rows.drop_duplicates(keys).set_index(keys)[
        ["eval", "group", "model", "question_id", "question", "answer", "category", "trigger"]]
    return info.join(wide).reset_index()


def _alignment_scorer(samples: pd.DataFrame, eval_name: str) -> str | None:
    scorers = samples.loc[samples["eval"] == eval_name, "scorer"].dropna().unique()
    judges = [s for s in scorers if is_alignment_scorer(s)]
    return "alignment_judge" if "alignment_judge" in judges else (judges[0] if judges else None)


def scatter_plots(
    samples: pd.DataFrame, order: Sequence[str], thresholds: Mapping[str, tuple[float, float]]
) -> list[dict[str, Any]]:
    figures = []
    for eval_name in samples["eval"].dropna().unique():
        scorer = _alignment_scorer(samples, eval_name)
        if scorer is None:
            continue
        answers = _pivot_answers(samples[samples["eval"] == eval_name], scorer)
        if not {"aligned", "coherent"} <= set(answers.columns):
            continue
        points = answers.dropna(subset=["aligned", "coherent"])
        groups = [g for g in order if g in set(points["group"])]
        limits = thresholds.get(eval_name, (ALIGNED_BELOW, COHERENT_ABOVE))
        fig = plots.coherence_alignment_plot(points, groups, *limits, f"{eval_name}: judged answers ({scorer})")
        figures.append({"eval": eval_name, "n": len(points), "thresholds": limits,
                        "image": plots.figure_html(fig, f"{eval_name}: coherence vs alignment of {len(points)} answers")})
    return figures


def top_answers(samples: pd.DataFrame, limit: int = TOP_ANSWERS) -> list[dict[str, Any]]:
    """The most misaligned answers: misaligned ones first, then by alignment score, lowest first."""
    rows = []
    for eval_name in samples["eval"].dropna().unique():
        scorer = _alignment_scorer(samples, eval_name)
        if scorer is None:
            continue
        answers = _pivot_answers(samples[samples["eval"] == eval_name], scorer)
        if "aligned" not in answers.columns:
            continue
        answers = answers.assign(_flag=answers.get("misaligned", pd.Series(dtype=float)).fillna(-1))
        rows.append(answers.dropna(subset=["aligned"]).sort_values(["_flag", "aligned"], ascending=[False, True]))
    if not rows:
        return []
    picked = pd.concat(rows, ignore_index=True).sort_values(["_flag", "aligned"], ascending=[False, True]).head(limit)
    return _records(picked.drop(columns="_flag"))


def judge_errors(samples: pd.DataFrame, order: Sequence[str]) -> list[dict[str, Any]]:
    """Per eval x scorer x group: answers, failed samples, and the per-answer indicators kept apart."""
    out = []
    keys = ["log", "sample_id", "epoch"]
    for eval_name in samples["eval"].dropna().unique():
        mine = samples[samples["eval"] == eval_name]
        failed = mine[mine["error"] != ""].drop_duplicates(keys)
        for scorer in mine["scorer"].dropna().unique():
            for group in order:
                part = mine[(mine["group"] == group) & (mine["scorer"] == scorer)]
                if part.empty:
                    continue
                counts = {label: int(part.loc[part["metric"] == key, "value"].fillna(0).sum())
                          for key, label in COUNT_KEYS.items() if (part["metric"] == key).any()}
                out.append({
                    "eval": eval_name, "scorer": scorer, "group": group,
                    "answers": int(part.drop_duplicates(keys).shape[0]),
                    "sample_errors": int((failed["group"] == group).sum()),
                    "counts": counts,
                })
    return out


def comparison_tables(samples: pd.DataFrame, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    tables = []
    for a, b in pairs:
        result = compare(samples, a, b, by="group")
        shown = with_display(shown_rows(result, samples), samples)
        tables.append({"a": a, "b": b, "rows": _records(shown), "full": result})
    return tables


# -- writing ---------------------------------------------------------------------------------------


def write_report(
    logs: list[Path] | LogData,
    groups: dict[str, str] | None,
    out: Path,
    title: str | None = None,
    extra_sections: list[tuple[str, str]] | None = None,
    *,
    comparisons: Sequence[tuple[str, str]] = (),
    top: int = TOP_ANSWERS,
) -> Path:
    """Write index.html, report.md, samples.csv and summary.json under ``out``; return index.html.

    ``groups`` maps NAME -> glob pattern on model name or log path; ``comparisons`` are pairs of
    group names (B - A); ``extra_sections`` are (title, trusted HTML) appended to the HTML.
    ``logs`` may be the logs already read with ``groups`` (``read_logs``), so a caller that needs
    them too reads each log once."""
    data = logs if isinstance(logs, LogData) else read_logs(logs, groups)
    samples = data.samples
    order = group_order(samples, groups)
    kinds = _kinds(samples)
    summary = decorate(summary_frame(samples, by=("eval", "group")), kinds)
    per_q = per_question(samples, kinds)
    compared = comparison_tables(samples, comparisons)
    runs = run_rows(data)
    errors = judge_errors(samples, order)
    created = sorted(str(r["created"]) for r in runs)
    context = {
        "title": title or "emeval report",
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "emeval_version": __version__,
        "inspect_version": _package_version("inspect_ai"),
        "dates": (created[0][:10], created[-1][:10]) if created else ("", ""),
        "groups": [{"name": g, "pattern": (groups or {}).get(g),
                    "models": sorted(samples.loc[samples["group"] == g, "model_id"].unique())} for g in order],
        "n_answers": int(samples.drop_duplicates(["log", "sample_id", "epoch"]).shape[0]),
        "runs": runs,
        "tables": summary_tables(summary, samples, order),
        "question_plots": question_plots(per_q, order),
        "question_tables": question_tables(per_q, order),
        "scatter_plots": scatter_plots(samples, order, recorded_thresholds(data)),
        "judge_errors": errors,
        "count_labels": [label for label in COUNT_KEYS.values() if any(label in row["counts"] for row in errors)],
        "comparisons": compared,
        "answers": top_answers(samples, top),
        "md_answers": MD_ANSWERS,
        "ci_methods": CI_METHODS,
        "extra_sections": [(name, Markup(html)) for name, html in extra_sections or []],
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(samples, out / "samples.csv")
    document = redact_data(_json_document(context, summary, per_q, groups))
    (out / "summary.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "report.md").write_text(render("report.md.j2", **context))
    index = out / "index.html"
    index.write_text(render("report.html.j2", **context))
    return index


def recorded_thresholds(data: LogData) -> dict[str, tuple[float, float]]:
    """Per eval, the (aligned_below, coherent_above) its logs' alignment scorer ran with, when all
    its logs agree (else the plot falls back to the defaults)."""
    found: dict[str, set[tuple[float, float]]] = {}
    for header in data.headers.values():
        name = header.eval.task.split("/", 1)[-1]
        for spec in header.eval.scorers or []:
            options = spec.options or {}
            if is_alignment_scorer(spec.name) and "aligned_below" in options:
                found.setdefault(name, set()).add((float(options["aligned_below"]), float(options["coherent_above"])))
    return {name: next(iter(t)) for name, t in found.items() if len(t) == 1}


def _json_document(context: Mapping[str, Any], summary: pd.DataFrame, per_q: pd.DataFrame,
                   groups: Mapping[str, str] | None) -> dict[str, Any]:
    runs = [{k: (str(v) if k == "created" else v) for k, v in run.items()} for run in context["runs"]]
    return {
        "title": context["title"],
        "generated": context["generated"],
        "emeval_version": context["emeval_version"],
        "inspect_version": context["inspect_version"],
        "groups": dict(groups or {}),
        "group_order": [g["name"] for g in context["groups"]],
        "ci_methods": CI_METHODS,
        "runs": runs,
        "summary": _records(summary),
        "per_question": _records(per_q),
        "judge_errors": context["judge_errors"],
        "comparisons": [{"a": c["a"], "b": c["b"], "rows": _records(c["full"])} for c in context["comparisons"]],
    }
