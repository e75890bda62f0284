"""``emeval compare``: the difference of every metric between two groups or two runs, as a table.

Why apart from the numbers (``emeval.stats.compare``, which says how the difference and its CI
are computed): a person reads the headline metrics overall, then the first one question by
question, with every CI saying what it resampled; the CSV holds every row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emeval.logs.frame import read_logs
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
from emeval.stats.compare import compare, select

CI_LEGEND = (
    "CI over: models (paper) = the paper's bootstrap of per-model rates (several models); questions+answers = "
    "one model's questions, then their answers; answers = answers only (one question). The answer-level CI of "
    "every row is in --csv (answers_ci_low, answers_ci_high)."
)


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
