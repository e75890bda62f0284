"""Reference bootstraps written as plain loops from their definitions, independently of
``emeval.stats.bootstrap`` (which vectorises them): the tests recompute expected CIs with these.

Each loop draws from ``default_rng(seed)`` in the order the library documents, so its numbers
must agree to rounding: a different resampling scheme, seed, count or percentile rule would not."""

from __future__ import annotations

import numpy as np

def percentile_bounds(draws, level: float = 0.95) -> tuple[float, float]:
    alpha = (1 - level) / 2 * 100
    return float(np.percentile(draws, alpha)), float(np.percentile(draws, 100 - alpha))


def resample_draws(values, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Upstream's ``get_error_bars`` loop: ``rng.choice`` with replacement, the mean of each."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    return np.array([np.mean(rng.choice(values, size=len(values), replace=True)) for _ in range(resamples)])


def resample_loop(values, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of ``resample_draws``."""
    return (float(np.mean(values)), *percentile_bounds(resample_draws(values, resamples, seed)))


def two_stage_loop(clusters, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(pooled mean, low, high) of ``two_stage_draws``."""
    pooled = float(np.concatenate([np.asarray(c, dtype=float) for c in clusters]).mean())
    return (pooled, *percentile_bounds(two_stage_draws(clusters, resamples, seed)))


def two_stage_draws(clusters, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """The two-stage bootstrap in ``emeval.stats.bootstrap.cluster_draws``'s
    documented draw order: first, for every resample, which questions it draws (as many as there
    are, with replacement); then question by question, for every time a resample drew it (in
    resample order), that question's answers with replacement. Statistic: the mean of all the
    answers a resample drew."""
    rng = np.random.default_rng(seed)
    clusters = [np.asarray(c, dtype=float) for c in clusters]
    if len(clusters) == 1:
        return resample_draws(clusters[0], resamples, seed)
    picks = [rng.choice(len(clusters), size=len(clusters), replace=True) for _ in range(resamples)]
    sums, counts = [0.0] * resamples, [0] * resamples
    for index, answers in enumerate(clusters):
        for resample in range(resamples):
            for pick in picks[resample]:
                if pick == index:
                    sums[resample] += float(np.sum(rng.choice(answers, size=len(answers), replace=True)))
                    counts[resample] += len(answers)
    return np.array([total / count for total, count in zip(sums, counts, strict=True)])
