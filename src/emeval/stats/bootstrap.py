"""emeval's statistics in one place: the seed/resample/level policy and every bootstrap it uses.

Why one module: a CI must say what it resampled, and every CI of one kind must be drawn the same
way. Three kinds, each named by its ``ci_method`` label:

- ``CI_MODELS`` ("models (paper)"): the EM paper's error bars (Betley et al. 2025; upstream
  ``get_error_bars`` in the authors' plotting code). The misaligned rate is computed per model
  (per question, or overall over the answers of all questions pooled); a group's value is the
  mean of its models' rates; the 95% CI is a percentile bootstrap of that mean over the model
  rates (2000 resamples, ``default_rng(0)`` created afresh for every call, ``np.percentile``
  linear). Upstream returns a zero-width bar for one model and (0, 0, 0) for none; emeval's
  ``model_rates_ci`` says n/a instead (one model has no between-model spread to measure).
  Upstream's plots also drop a model from a question where it gave fewer than 5 coherent
  answers (``min_coherent_answers=5``): ``PAPER_MIN_ANSWERS``.
- ``CI_TWO_STAGE`` ("questions+answers"): the default for a claim about one
  model: resample its questions, then the answers within each drawn question; the statistic is
  the mean over all drawn answers (the point estimate pools answers over questions).
- ``CI_ANSWERS`` ("answers"): resample answers, ignoring that answers cluster within questions.
  It describes this sample of answers only; it is too narrow for a claim about the model.

A difference of two runs of the same samples (the fragility audit: after − before) is
``difference_ci``: paired over the samples both runs hold (the paired bootstrap), else each run
resampled on its own.

``group_estimate`` picks the headline for a cell of answers (reports, ``compare``): the
paper's ``CI_MODELS`` when the cell holds two or more models, ``CI_TWO_STAGE`` for one model
(``CI_ANSWERS`` when that model answered one question), and always the ``CI_ANSWERS`` figures
beside it, labelled.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
PAPER_MIN_ANSWERS = 5
"""Upstream's ``min_coherent_answers``: a model with fewer answers in a cell is left out of it."""

CI_MODELS = "models (paper)"
CI_TWO_STAGE = "questions+answers"
CI_ANSWERS = "answers"


def generator(seed: int = SEED) -> np.random.Generator:
    """The only way emeval seeds a bootstrap."""
    return np.random.default_rng(seed)


def resample(data: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The one resampling step of every bootstrap: ``resamples`` draws of ``data``'s rows with
    replacement, shape ``(resamples, len(data), ...)``; indices drawn resample by resample."""
    return data[rng.integers(0, len(data), size=(resamples, len(data)))]


def percentile_interval(draws: np.ndarray, level: float = LEVEL, method: str = "linear") -> tuple[float, float]:
    """(low, high) percentile interval (``np.percentile``, linear unless ``method`` says otherwise,
    e.g. ``inverted_cdf`` for bounds that must be observed values); NaNs for no or undefined draws."""
    draws = np.asarray(draws, dtype=float)
    if draws.size == 0 or np.isnan(draws).any():
        return math.nan, math.nan
    alpha = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [alpha, 100 - alpha], method=method)
    return float(low), float(high)


def mean_draws(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Bootstrap means of ``values`` resampled with replacement. The draws are those of upstream's
    loop of ``rng.choice(values, size=len(values), replace=True)`` on the same generator."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return np.full(resamples, math.nan)
    return resample(data, resamples, generator(seed)).mean(axis=1)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Each row's mean over its defined values; NaN (no warning) for a row with none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=1)


def difference_ci(base: pd.Series, other: pd.Series, resamples: int = RESAMPLES, seed: int = SEED,
                  level: float = LEVEL) -> tuple[float, float, float, bool, int]:
    """(delta, low, high, paired, n): ``mean(other) - mean(base)`` over defined values, with a
    percentile bootstrap CI.

    Both series are indexed by sample (the audit: (sample id, epoch)). When they hold the same
    samples, pairs are resampled together (the paired bootstrap: sample-to-sample variation
    cancels; ``n`` pairs); otherwise each side is resampled on its own (``other``'s draws first;
    ``n`` the smaller side). A NaN value is a sample the statistic does not count; a resample where
    a side has no defined value is dropped."""
    a = base.to_numpy(dtype=float)
    paired = len(base) == len(other) and base.index.is_unique and set(base.index) == set(other.index)
    rng = generator(seed)
    if paired:
        b = other.reindex(base.index).to_numpy(dtype=float)
        idx = rng.integers(0, len(a), size=(resamples, len(a)))
        draws = _nanmean_rows(b[idx]) - _nanmean_rows(a[idx])
    else:
        b = other.to_numpy(dtype=float)
        draws_b = _nanmean_rows(b[rng.integers(0, len(b), size=(resamples, len(b)))])
        draws = draws_b - _nanmean_rows(a[rng.integers(0, len(a), size=(resamples, len(a)))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        delta = float(np.nanmean(b) - np.nanmean(a)) if len(a) and len(b) else math.nan
    low, high = percentile_interval(draws[~np.isnan(draws)], level)
    return delta, low, high, paired, len(a) if paired else min(len(a), len(b))


def answers_ci(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED,
               level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) resampling answers (``CI_ANSWERS``); NaN values are dropped first."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if data.size == 0:
        return math.nan, math.nan, math.nan
    return (float(data.mean()), *percentile_interval(mean_draws(data, resamples, seed), level))


def paper_error_bars(fractions: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL,
                     seed: int = SEED) -> tuple[float, float, float]:
    """Upstream's ``get_error_bars``, same semantics: (center, lower_err, upper_err) with center the
    mean of ``fractions``, errors to the percentile bounds; (0, 0, 0) for none, (x, 0, 0) for one."""
    data = np.asarray(fractions, dtype=float)
    if data.size == 0:
        return 0.0, 0.0, 0.0
    if data.size == 1:
        return float(data[0]), 0.0, 0.0
    low, high = percentile_interval(mean_draws(data, resamples, seed), level)
    center = float(data.mean())
    return center, center - low, high - center


def model_rates_ci(rates: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL,
                   seed: int = SEED) -> tuple[float, float, float]:
    """(group value, low, high) of ``CI_MODELS``: ``paper_error_bars`` as bounds; n/a CI for < 2 models."""
    data = np.asarray(rates, dtype=float)
    if data.size == 0:
        return math.nan, math.nan, math.nan
    if data.size == 1:
        return float(data[0]), math.nan, math.nan
    center, lower_err, upper_err = paper_error_bars(data, resamples, level, seed)
    return center, center - lower_err, center + upper_err


def cluster_draws(clusters: Sequence[np.ndarray], resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Two-stage bootstrap of the pooled mean: clusters with replacement, then each drawn cluster's
    values with replacement; statistic = mean over all drawn values. One cluster: ``mean_draws``.

    Draw order (one generator, so the draws can be reproduced by a plain loop): first, for every
    resample, its cluster picks; then cluster by cluster, for every time a resample picked it (in
    resample order), that cluster's values."""
    clusters = [np.asarray(c, dtype=float) for c in clusters if len(c)]
    if not clusters:
        return np.full(resamples, math.nan)
    if len(clusters) == 1:
        return mean_draws(clusters[0], resamples, seed)
    rng = generator(seed)
    picks = rng.integers(0, len(clusters), size=(resamples, len(clusters)))
    sums, counts = np.zeros(resamples), np.zeros(resamples)
    for index, data in enumerate(clusters):
        draws = np.nonzero(picks == index)[0]  # one entry per time this cluster was drawn
        chunk = max(1, 2_000_000 // data.size)  # bound memory for large clusters
        for start in range(0, draws.size, chunk):
            rows = draws[start : start + chunk]
            totals = resample(data, rows.size, rng).sum(axis=1)
            np.add.at(sums, rows, totals)
            np.add.at(counts, rows, data.size)
    return sums / counts


def two_stage_ci(clusters: Sequence[np.ndarray], resamples: int = RESAMPLES, seed: int = SEED,
                 level: float = LEVEL) -> tuple[float, float, float, str]:
    """(pooled mean, low, high, ci_method) for one model whose values are split by question:
    ``CI_TWO_STAGE`` over questions then answers; ``CI_ANSWERS`` when there is one question."""
    clusters = [np.asarray(c, dtype=float) for c in clusters if len(c)]
    if not clusters:
        return math.nan, math.nan, math.nan, CI_TWO_STAGE
    method = CI_TWO_STAGE if len(clusters) > 1 else CI_ANSWERS
    low, high = percentile_interval(cluster_draws(clusters, resamples, seed), level)
    return float(np.concatenate(clusters).mean()), low, high, method


def model_rates(cell: pd.DataFrame, model: str = "model_id", min_answers: int = 1) -> tuple[pd.DataFrame, int]:
    """Per model (sorted): ``mean`` (its rate: the mean of its defined ``value``s) and ``size`` (how
    many), for the models with at least ``min_answers`` defined values; and how many were left out."""
    counts = cell.dropna(subset=["value"]).groupby(model, sort=True)["value"].agg(["mean", "size"])
    kept = counts[counts["size"] >= min_answers]
    return kept, int(len(counts) - len(kept))


def group_draws(cell: pd.DataFrame, model: str = "model_id", question: str = "question_id",
                resamples: int = RESAMPLES, seed: int = SEED, min_answers: int = 1) -> tuple[float, np.ndarray, str]:
    """(group value, bootstrap draws, ci_method) of the headline estimate of one cell of answers:
    two or more models: the mean of the model rates, draws over the rates (``CI_MODELS``); one
    model: its rate, draws over its questions then their answers (``CI_TWO_STAGE``, or
    ``CI_ANSWERS`` for one question); none: NaN."""
    kept, _ = model_rates(cell, model, min_answers)
    if len(kept) >= 2:
        rates = kept["mean"].to_numpy()
        return float(rates.mean()), mean_draws(rates, resamples, seed), CI_MODELS
    if len(kept) == 0:
        return math.nan, np.full(resamples, math.nan), CI_TWO_STAGE
    mine = cell[(cell[model] == kept.index[0]) & cell["value"].notna()]
    if question in mine.columns:
        clusters = [part["value"].to_numpy() for _, part in mine.groupby(question, sort=True)]
    else:
        clusters = [mine["value"].to_numpy()]
    method = CI_TWO_STAGE if len(clusters) > 1 else CI_ANSWERS
    return float(mine["value"].mean()), cluster_draws(clusters, resamples, seed), method


def group_estimate(cell: pd.DataFrame, model: str = "model_id", question: str = "question_id",
                   resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL,
                   min_answers: int = 1) -> dict[str, object]:
    """The figures a report shows for one cell of answers (one metric of one group, overall or for
    one question): ``n`` (defined values of the models kept), ``n_models``, ``n_models_excluded``,
    the headline ``mean``, ``ci_low``, ``ci_high`` and ``ci_method`` (``group_draws``), and the
    answer-level ``answers_mean``, ``answers_ci_low``, ``answers_ci_high`` (``CI_ANSWERS``)."""
    kept, excluded = model_rates(cell, model, min_answers)
    value, draws, method = group_draws(cell, model, question, resamples, seed, min_answers)
    low, high = percentile_interval(draws, level)
    answers = cell.loc[cell[model].isin(kept.index), "value"].dropna().to_numpy()
    answers_mean, answers_low, answers_high = answers_ci(answers, resamples, seed, level)
    return {"n": int(kept["size"].sum()), "n_models": len(kept), "n_models_excluded": excluded,
            "mean": value, "ci_low": low, "ci_high": high, "ci_method": method,
            "answers_mean": answers_mean, "answers_ci_low": answers_low, "answers_ci_high": answers_high}


def paper_aggregation(cell: pd.DataFrame, model: str = "model_id", question: str = "question_id",
                      min_answers: int = PAPER_MIN_ANSWERS) -> pd.DataFrame:
    """The paper's table for one metric of one group: per question and overall (``question`` =
    ""), the per-model rates (mean of the defined ``value``s), the group value (mean of the rates)
    and its ``CI_MODELS`` interval. Overall pools each model's answers over all questions before
    taking its rate (as upstream's all-questions figure does). Models with fewer than
    ``min_answers`` defined values in a cell are left out of it and counted."""
    defined = cell.dropna(subset=["value"])
    parts = [(q, part) for q, part in defined.groupby(question, sort=True)] + [("", defined)]
    rows = []
    for qid, part in parts:
        kept, excluded = model_rates(part, model, min_answers)
        value, low, high = model_rates_ci(kept["mean"].to_numpy())
        rows.append({question: qid, "n": int(kept["size"].sum()), "n_models": len(kept),
                     "n_models_excluded": excluded, "model_rates": kept["mean"].to_dict(),
                     "mean": value, "ci_low": low, "ci_high": high, "ci_method": CI_MODELS})
    return pd.DataFrame(rows)
