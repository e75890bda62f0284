"""The tidy answers frame summarised: per cell (eval, group, scorer, metric) the headline estimate
with the CI its unit of analysis calls for, and the answer-level figures beside it.

Why in stats: the numbers are ``stats.bootstrap.group_estimate``'s; the frame they summarise is the
logs wing's (``emeval.logs.frame``), read once for every report, compare and nightly.

Documented in docs/reports.md. A group holds one or more models.
With two or more, its value is the EM paper's: the mean of the per-model rates, with a 95% CI
from bootstrapping those rates (``models (paper)``). With one model, its value is that model's
rate, with a CI that resamples its questions, then the answers within them
(``questions+answers``; ``answers`` when it answered one question). The answer-level CI is
reported beside it (``answers_ci_low``/``answers_ci_high``), labelled, for describing this sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from emeval.logs.frame import SUMMARY_KEYS, cluster_column
from emeval.stats import bootstrap as stats


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
