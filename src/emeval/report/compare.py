"""The difference of every metric between two groups or two runs, with a bootstrap CI.

Why: "did the fine-tune (or the backdoor trigger) change the answers?" is a question about a
difference, and it needs its own interval, not two overlapping ones. Each side is estimated as a
report does (``stats.group_draws``): several models, the paper's mean of model rates resampled
over models; one model, its rate resampled over questions, then answers. The difference is
``mean(B) - mean(A)``; its 95% CI is the percentile interval of the difference of the two sides'
independent bootstrap draws, and ``ci_method`` says what they resampled. The answer-level
difference and CI (``answers_*``) are given beside it, labelled: they describe these answers
only. A difference is flagged when its headline CI excludes zero. Per-question rows are many
tests at once: expect about one in twenty flagged by chance when nothing changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emeval.stats import bootstrap as stats
from emeval.logs.frame import SUMMARY_KEYS, cluster_column, read_logs
from emeval.sanitize.safe_output import write_csv
from emeval.report.display import (
    format_difference,
    format_estimate,
    format_number,
    headline_keys,
    judge_label,
    judge_names,
    metric_kind,
    metric_label,
)
from emeval.report.terminal import make_console

COMPARE_COLUMNS = [
    "eval", "scorer", "metric", "question_id",
    "n_a", "mean_a", "ci_low_a", "ci_high_a", "ci_method_a",
    "n_b", "mean_b", "ci_low_b", "ci_high_b", "ci_method_b",
    "difference", "ci_low", "ci_high", "ci_method", "significant",
    "answers_difference", "answers_ci_low", "answers_ci_high",
]
RUN_COLUMNS = ("run_id", "eval_id", "log")
CI_LEGEND = (
    "CI over: models (paper) = the paper's bootstrap of per-model rates (several models); questions+answers = "
    "one model's questions, then their answers; answers = answers only (one question). The answer-level CI of "
    "every row is in --csv (answers_ci_low, answers_ci_high)."
)


def select(samples: pd.DataFrame, value: str, by: str) -> pd.DataFrame:
    """The rows of one side: ``by`` is a column name, or ``run`` (run id, eval id, log path or file name)."""
    if by == "run":
        mask = np.zeros(len(samples), dtype=bool)
        for column in RUN_COLUMNS:
            mask |= samples[column].astype(str).eq(value).to_numpy()
        names = samples["log"].astype(str).map(lambda p: Path(p).name)
        mask |= names.eq(value).to_numpy() | names.map(lambda n: n.rsplit(".", 1)[0]).eq(value).to_numpy()
        choices = sorted(samples["run_id"].astype(str).unique())
    else:
        if by not in samples.columns:
            raise ValueError(f"compare: no column {by!r} to compare by (use group, run or a samples column)")
        mask = samples[by].astype(str).eq(value).to_numpy()
        choices = sorted(samples[by].astype(str).unique())
    if not mask.any():
        raise ValueError(f"compare: no {by} {value!r} in these logs (found: {', '.join(choices)})")
    return samples[mask]


def _side(cell: pd.DataFrame | None, resamples: int, seed: int, level: float, diff_seed: int) -> dict[str, Any]:
    """One side's ``stats.group_estimate`` (with ``seed``: the same numbers as ``summary_frame``),
    and its headline and answer-level draws with ``diff_seed``, for the difference."""
    if cell is None or cell["value"].notna().sum() == 0:
        nan = np.full(resamples, np.nan)
        return {"n": 0, "mean": np.nan, "ci_low": np.nan, "ci_high": np.nan, "ci_method": "",
                "answers_mean": np.nan, "draws": nan, "answer_draws": nan}
    model = cluster_column(cell)
    estimate = stats.group_estimate(cell, model=model, resamples=resamples, seed=seed, level=level)
    _, draws, _ = stats.group_draws(cell, model=model, resamples=resamples, seed=diff_seed)
    answer_draws = stats.mean_draws(cell["value"].dropna().to_numpy(), resamples, diff_seed)
    return {**estimate, "draws": draws, "answer_draws": answer_draws}


def difference_method(method_a: str, method_b: str) -> str:
    """What the difference's CI resampled: one label when both sides agree, else both, A's first."""
    methods = [m for m in dict.fromkeys([method_a, method_b]) if m]
    return " / ".join(methods)


def compare(
    samples: pd.DataFrame,
    a: str,
    b: str,
    by: str = "group",
    per_question: bool = True,
    metrics: Sequence[str] | None = None,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
    level: float = stats.LEVEL,
) -> pd.DataFrame:
    """B minus A for every eval x scorer x metric (``question_id`` empty), and with ``per_question``
    also per question id. Columns: ``COMPARE_COLUMNS``; ``significant`` = the CI excludes zero."""
    side_a, side_b = (select(samples, value, by) for value in (a, b))
    side_a, side_b = (s[s["metric"].notna()] for s in (side_a, side_b))
    if metrics is not None:
        side_a, side_b = (s[s["metric"].isin(metrics)] for s in (side_a, side_b))
    levels: list[list[str]] = [["eval", *SUMMARY_KEYS]]
    if per_question:
        levels.append(["eval", *SUMMARY_KEYS, "question_id"])
    rows = []
    for keys in levels:
        cells_a = dict(iter(side_a.groupby(keys, sort=False)))
        cells_b = dict(iter(side_b.groupby(keys, sort=False)))
        for key in list(dict.fromkeys([*cells_a, *cells_b])):
            stats_a = _side(cells_a.get(key), resamples, seed, level, diff_seed=seed)
            stats_b = _side(cells_b.get(key), resamples, seed, level, diff_seed=seed + 1)  # independent of A's draws
            if stats_a["n"] == 0 and stats_b["n"] == 0:
                continue
            low, high = stats.percentile_interval(stats_b["draws"] - stats_a["draws"], level)
            answers_low, answers_high = stats.percentile_interval(stats_b["answer_draws"] - stats_a["answer_draws"], level)
            named = dict(zip(keys, key, strict=True))
            rows.append({
                "eval": named["eval"], "scorer": named["scorer"], "metric": named["metric"],
                "question_id": named.get("question_id", ""),
                **{f"{field}_{side}": values[field] for side, values in (("a", stats_a), ("b", stats_b))
                   for field in ("n", "mean", "ci_low", "ci_high", "ci_method")},
                "difference": stats_b["mean"] - stats_a["mean"], "ci_low": low, "ci_high": high,
                "ci_method": difference_method(stats_a["ci_method"], stats_b["ci_method"]),
                "significant": bool(low > 0 or high < 0),
                "answers_difference": stats_b["answers_mean"] - stats_a["answers_mean"],
                "answers_ci_low": answers_low, "answers_ci_high": answers_high,
            })
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def shown_rows(result: pd.DataFrame, samples: pd.DataFrame, all_metrics: bool = False) -> pd.DataFrame:
    """What a person reads: per eval and scorer, the headline metrics overall (every metric with
    ``all_metrics``), then the first headline metric question by question."""
    picked = []
    for _, rows in result.groupby(["eval", "scorer"], sort=False):
        scorer = rows["scorer"].iloc[0]
        available = list(samples.loc[samples["scorer"] == scorer, "metric"].dropna().unique())
        headline = headline_keys(scorer, available)
        overall = rows[rows["question_id"] == ""]
        order = available if all_metrics else headline
        for metric in order:
            picked.append(overall[overall["metric"] == metric])
        if headline:
            picked.append(rows[(rows["question_id"] != "") & (rows["metric"] == headline[0])])
    return pd.concat(picked) if picked else result.iloc[0:0]


def with_display(result: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Adds label, kind and the printed cells (a, b, difference), the same in terminal and report."""
    out = result.copy()
    kinds = {
        (s, m): metric_kind(s, m, samples.loc[(samples["scorer"] == s) & (samples["metric"] == m), "value"])
        for s, m in out[["scorer", "metric"]].drop_duplicates().itertuples(index=False)
    }
    out["kind"] = [kinds[(s, m)] for s, m in zip(out["scorer"], out["metric"], strict=True)]
    judges = judge_names(samples)
    out["label"] = [judge_label(metric_label(s, m), judges.get((e, s))) for e, s, m in
                    zip(out["eval"], out["scorer"], out["metric"], strict=True)]
    out["a_text"] = [format_estimate(k, m, lo, hi) for k, m, lo, hi in
                     zip(out["kind"], out["mean_a"], out["ci_low_a"], out["ci_high_a"], strict=True)]
    out["b_text"] = [format_estimate(k, m, lo, hi) for k, m, lo, hi in
                     zip(out["kind"], out["mean_b"], out["ci_low_b"], out["ci_high_b"], strict=True)]
    out["difference_text"] = [format_difference(k, d, lo, hi) for k, d, lo, hi in
                              zip(out["kind"], out["difference"], out["ci_low"], out["ci_high"], strict=True)]
    out["answers_difference_text"] = [
        format_difference(k, d, lo, hi) for k, d, lo, hi in
        zip(out["kind"], out["answers_difference"], out["answers_ci_low"], out["answers_ci_high"], strict=True)]
    return out


def side_labels(a: str, b: str) -> tuple[str, str]:
    """The names a person gave the two sides, as short as stays distinct: a path's last part
    (``logs/clean`` -> ``clean``), else the text as given; ``A``/``B`` only when both are the same."""
    if a == b:
        return "A", "B"
    short = tuple(Path(x.rstrip("/\\")).name or x for x in (a, b))
    return short if short[0] != short[1] else (a, b)


def compare_table(shown: pd.DataFrame, a: str, b: str) -> Table:
    """The terminal table; columns named by the sides' labels, every CI says what it resampled.
    Text from logs and users is escaped: ``[judge: ...]`` is a label, not rich markup."""
    a, b = escape(a), escape(b)
    table = Table(title=f"{b} − {a};  * = the 95% CI excludes 0", header_style="bold")
    table.add_column("eval")
    table.add_column("question")
    table.add_column("metric")
    table.add_column(a, justify="right", no_wrap=True)
    table.add_column(b, justify="right", no_wrap=True)
    table.add_column(f"{b} − {a} [95% CI]", justify="right", no_wrap=True)
    table.add_column("CI over")
    table.add_column("", justify="center")
    for row in shown.itertuples(index=False):
        flag = "[bold red]*[/bold red]" if row.significant else ""
        table.add_row(escape(row.eval), escape(row.question_id or "(all)"), escape(row.label),
                      f"{format_number(row.kind, row.mean_a)} (n={row.n_a})",
                      f"{format_number(row.kind, row.mean_b)} (n={row.n_b})", row.difference_text, row.ci_method, flag)
    return table


def load_sides(
    a: str, b: str, logs: Iterable[str | Path], groups: Mapping[str, str] | None
) -> tuple[pd.DataFrame, str, str, str]:
    """(samples, a, b, by) for ``emeval compare``: A and B are two log files/directories when no
    LOGS are given (each side becomes a group named by its path), else groups or runs in LOGS."""
    logs = list(logs)
    if not logs:
        label_a, label_b = side_labels(a, b)
        side_a = read_logs([a]).samples.assign(group=label_a)
        side_b = read_logs([b]).samples.assign(group=label_b)
        return pd.concat([side_a, side_b], ignore_index=True), label_a, label_b, "group"
    samples = read_logs(logs, groups).samples
    by = "group" if {a, b} & set(samples["group"].astype(str)) else "run"
    return samples, a, b, by


def run_compare(
    a: str,
    b: str,
    logs: Iterable[str | Path] = (),
    groups: Mapping[str, str] | None = None,
    per_question: bool = True,
    all_metrics: bool = False,
    console: Console | None = None,
    csv: Path | None = None,
) -> pd.DataFrame:
    """The ``emeval compare`` command: compute, print a rich table, optionally write the full CSV."""
    console = console or make_console()
    a_given, b_given = a, b
    samples, a, b, by = load_sides(a, b, logs, groups)
    result = compare(samples, a, b, by=by, per_question=per_question)
    shown = with_display(shown_rows(result, samples, all_metrics), samples)
    console.print(compare_table(shown, a, b))
    for value, given in ((a, a_given), (b, b_given)):
        side = select(samples, value, by)
        triggers = sorted(set(side["trigger"].dropna().astype(str))) or ["none"]
        source = f" ({given})" if given != value else ""
        console.print(f"{value}{source}: {side['log'].nunique()} log(s), models {', '.join(sorted(side['model'].unique()))}; "
                      f"trigger {', '.join(triggers)}", markup=False, highlight=False)
    console.print(CI_LEGEND, markup=False, highlight=False)
    if csv is not None:
        write_csv(with_display(result, samples), csv)
        console.print(f"csv: {csv}")
    return result
