"""The difference of every metric between two groups or two runs, with a bootstrap CI: the numbers.

Why: "did the fine-tune (or the backdoor trigger) change the answers?" is a question about a
difference, and it needs its own interval, not two overlapping ones. Each side is estimated as a
report does (``bootstrap.group_draws``): several models, the paper's mean of model rates resampled
over models; one model, its rate resampled over questions, then answers. The difference is
``mean(B) - mean(A)``; its 95% CI is the percentile interval of the difference of the two sides'
independent bootstrap draws (A drawn with ``seed``, B with ``seed + 1``), and ``ci_method`` says
what they resampled. The answer-level difference and CI (``answers_*``) are given beside it,
labelled: they describe these answers only. A difference is flagged when its headline CI excludes
zero. Per-question rows are many tests at once: expect about one in twenty flagged by chance when
nothing changed. Tables and the ``emeval compare`` command: ``emeval.report.compare``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emeval.logs.frame import SUMMARY_KEYS, cluster_column
from emeval.stats import bootstrap as stats

COMPARE_COLUMNS = [
    "eval", "scorer", "metric", "question_id",
    "n_a", "mean_a", "ci_low_a", "ci_high_a", "ci_method_a",
    "n_b", "mean_b", "ci_low_b", "ci_high_b", "ci_method_b",
    "difference", "ci_low", "ci_high", "ci_method", "significant",
    "answers_difference", "answers_ci_low", "answers_ci_high",
]
RUN_COLUMNS = ("run_id", "eval_id", "log")


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
