"""Phase-transition detection on a sweep curve: one change point, its bootstrap CI, the steepest step.

Model: the curve is the mean of a metric at each training step. A transition is a change in level:
the step means are fit by one constant (no change) and by two constants split between
consecutive steps (least squares over every split; exact, since a curve has at most a few hundred
steps). The split's first step after the break is the *change point*.

Test (defined here and in docs/local_models_and_sweeps.md): a transition is reported when all of
1. **calibrated on null curves**: the split's likelihood ratio over the constant (Gaussian errors,
   unknown variance: ``LR = T ln(SSE_const / SSE_split)`` over the T step means) is larger than on
   all but ``ALPHA`` = 5% of ``NULL_CURVES`` = 2000 simulated curves of the same length with no
   change (seed 0). Under a constant level with independent checkpoint-to-checkpoint noise of any
   size the statistic does not depend on the noise's size or on the step spacing, so this p-value
   holds the false-positive rate at 5% whatever the noise (sampling noise of the probes, jitter
   between checkpoints): the noise is what the curve's own residuals say it is. ``delta_bic``
   (``LR - 2 ln T``) is still reported as a measure of strength. For a 0/1 indicator (a judged
   rate, ``picked_misaligned``) the null curves are also drawn as binomial samples at the pooled
   rate with each step's n (its own sampling noise) and the larger p-value counts: with one answer
   per step, a clean 0,0,1,1 is common under no change, and only that null knows it;
2. **an effect-size floor**: ``|after - before| >= floor``. A change smaller than the floor is "no
   transition" however certain: on probabilities and rates (every value in [0, 1]) the floor is
   5 pp, on 0-100 scores 5 points, on an unbounded metric (log-probabilities) 0.2 within-step
   standard deviations of the samples (Cohen's "small" effect). ``emeval.report.sweep`` computes
   one floor per eval x metric from all its samples and passes it to each (grouped) curve;
3. the 95% bootstrap CI of the level difference excludes 0.
Otherwise the result says "no transition" and which condition failed (the best split is still reported).
Measured (bench/changepoint_calibration.py, tests/stats/test_changepoint.py): see docs/local_models_and_sweeps.md.

Bootstrap (``emeval.stats.bootstrap``'s draws: 2000 resamples, seed 0): samples are resampled
within each step. When every step holds the same sample ids (the same probe questions, the same
question x repeat ids), ids are resampled jointly across steps, keeping the pairing, so the
between-question spread does not count as noise.
Each resample refits the change point: its 2.5/97.5 percentiles (as observed steps) are the CI on
the location. Levels and their difference get percentile CIs at the fitted location.

Steepest slope: the pair of consecutive steps with the largest absolute change of the mean per
training step. ``abruptness``: how much better the two-level fit is than a straight line
(``delta_bic`` of split vs line); a steady drift also moves the level, and this tells them apart.

A piecewise-constant least-squares fit with exhaustive search is what ``ruptures``' ``Dynp`` with
an ``l2`` cost computes for one break; numpy does it in a few lines and vectorises over the
bootstrap resamples, so no extra dependency. The null distribution of the best split's statistic
has no exact closed form, and its asymptotic approximations are poor for the 3-20 checkpoints of a
sweep, so it is simulated (once per curve length, cached) rather than taken from ``scipy.stats``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from emeval.stats.bootstrap import RESAMPLES, SEED, generator, percentile_interval, resample

ALPHA = 0.05
"""The false-positive rate on null curves the test is calibrated to."""
NULL_CURVES = 2000
FLOOR_FRACTION = 0.05
"""Floor on bounded metrics: 5% of the scale (5 pp on [0, 1], 5 points on 0-100)."""
FLOOR_SD = 0.2
"""Floor on unbounded metrics, in within-step standard deviations of the samples."""
MIN_STEPS = 3


@dataclass(frozen=True)
class Floor:
    """The smallest level change that counts as a transition, and how it was chosen."""

    value: float
    text: str


def effect_floor(samples: dict[float, list[float]] | dict[float, dict[str, float]]) -> Floor:
    """The effect-size floor of a metric from its per-sample values at each step (see the module doc)."""
    by_step = [np.asarray(list(v.values()) if isinstance(v, dict) else list(v), dtype=float) for v in samples.values()]
    by_step = [v[~np.isnan(v)] for v in by_step]
    values = np.concatenate(by_step) if by_step else np.array([])
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        return Floor(FLOOR_FRACTION, f"{FLOOR_FRACTION:g} ({100 * FLOOR_FRACTION:g} pp)")
    if values.size and values.min() >= 0.0 and values.max() <= 100.0:
        return Floor(100 * FLOOR_FRACTION, f"{100 * FLOOR_FRACTION:g} (points of 0-100)")
    spread = [np.var(v, ddof=1) for v in by_step if v.size > 1]
    if not spread:
        return Floor(0.0, "none (one value per step of an unbounded metric)")
    sd = math.sqrt(float(np.mean(spread)))
    return Floor(FLOOR_SD * sd, f"{FLOOR_SD * sd:.3g} ({FLOOR_SD:g} within-step SD of {sd:.3g})")


@functools.lru_cache(maxsize=64)
def null_statistics(t: int, curves: int = NULL_CURVES, seed: int = SEED) -> np.ndarray:
    """Sorted likelihood-ratio statistics of ``curves`` simulated no-change curves of ``t`` steps.

    i.i.d. standard normal step means: the statistic is scale-free, so one simulation per length
    serves every metric and noise level.
    """
    y = generator(seed).standard_normal((curves, t))
    sse_const = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return np.sort(_likelihood_ratio(sse_const, _split_sse(y).min(axis=1), t))


def _likelihood_ratio(sse_const: np.ndarray | float, sse_split: np.ndarray | float, t: int) -> np.ndarray:
    floor = 1e-12 * t
    return t * np.log((np.asarray(sse_const) + floor) / (np.asarray(sse_split) + floor))


def null_p_value(statistic: float, t: int) -> float:
    """Share of simulated no-change curves whose statistic is at least as large (Monte Carlo, +1 smoothed)."""
    null = null_statistics(t)
    larger = len(null) - int(np.searchsorted(null, statistic, side="left"))
    return (1 + larger) / (1 + len(null))


def binomial_null_p_value(statistic: float, rate: float, counts: np.ndarray, curves: int = NULL_CURVES,
                          seed: int = SEED) -> float:
    """The same share for a 0/1 indicator, its no-change curves drawn as binomial samples.

    Why: an indicator's noise is its own sampling, known from the pooled rate and each step's n;
    with few answers per step (one, on a per-question curve) a clean 0,0,1,1 split is common under
    no change at all, and the Gaussian null, which cannot see that, would call it certain.
    """
    rng = generator(seed)
    means = rng.binomial(counts, rate, size=(curves, len(counts))) / counts
    t = len(counts)
    sse_const = np.sum((means - means.mean(axis=1, keepdims=True)) ** 2, axis=1)
    null = _likelihood_ratio(sse_const, _split_sse(means).min(axis=1), t)
    return float((1 + np.sum(null >= statistic - 1e-9)) / (1 + curves))


@dataclass
class ChangePoint:
    """A curve's change point analysis (all steps are training steps as given)."""

    detected: bool
    summary: str
    n_steps: int
    step: float | None = None
    """First step of the new level (the break lies between ``last_before`` and ``step``)."""
    last_before: float | None = None
    step_ci: tuple[float, float] | None = None
    before: float | None = None
    before_ci: tuple[float, float] | None = None
    after: float | None = None
    after_ci: tuple[float, float] | None = None
    difference: float | None = None
    difference_ci: tuple[float, float] | None = None
    p_null: float | None = None
    """Share of simulated no-change curves of the same length with a split at least this strong."""
    alpha: float = ALPHA
    floor: float | None = None
    floor_text: str = ""
    delta_bic: float | None = None
    delta_bic_vs_line: float | None = None
    steepest_from: float | None = None
    steepest_to: float | None = None
    steepest_slope: float | None = None
    paired_bootstrap: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split_sse(means: np.ndarray) -> np.ndarray:
    """SSE of the best two-level fit for every split k (levels means[:k], means[k:]); shape (..., T-1)."""
    t = means.shape[-1]
    c1 = np.cumsum(means, axis=-1)
    c2 = np.cumsum(means**2, axis=-1)
    k = np.arange(1, t)
    left = c2[..., :-1] - c1[..., :-1] ** 2 / k
    n_right = t - k
    s1_right = c1[..., -1:] - c1[..., :-1]
    s2_right = c2[..., -1:] - c2[..., :-1]
    right = s2_right - s1_right**2 / n_right
    return np.maximum(left + right, 0.0)


def _line_sse(x: np.ndarray, y: np.ndarray) -> float:
    slope, intercept = np.polyfit(x, y, 1)
    return float(np.sum((y - (slope * x + intercept)) ** 2))


def _delta_bic(sse_simple: float, sse_split: float, t: int, extra_params: int) -> float:
    floor = 1e-12 * t
    return float(t * math.log((sse_simple + floor) / (sse_split + floor)) - extra_params * math.log(t))


def detect(
    samples: dict[float, dict[str, float]] | dict[float, list[float]],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    alpha: float = ALPHA,
    floor: Floor | None = None,
) -> ChangePoint:
    """Change point of a curve given its per-sample values at each step.

    ``samples`` maps step -> values: a list (independent samples) or a dict sample id -> value
    (paired across steps when every step has the same ids). NaN values are ignored. ``floor``:
    the effect-size floor (default: ``effect_floor`` of these samples).
    """
    clean: dict[float, dict[str, float]] = {}
    for step, values in samples.items():
        # list positions are not sample ids: prefix them with the step so they never pair up
        items = values.items() if isinstance(values, dict) else ((f"{step}:{i}", v) for i, v in enumerate(values))
        kept = {str(k): float(v) for k, v in items if v is not None and not math.isnan(float(v))}
        if kept:
            clean[float(step)] = kept
    steps = np.array(sorted(clean))
    t = len(steps)
    if t < MIN_STEPS:
        return ChangePoint(False, f"no detectable transition: {t} step(s) with data, a change point needs {MIN_STEPS}", t)

    means = np.array([np.mean(list(clean[s].values())) for s in steps])
    diffs = np.diff(means) / np.diff(steps)
    steepest = int(np.argmax(np.abs(diffs)))
    sse_const = float(np.sum((means - means.mean()) ** 2))
    split_sse = _split_sse(means)
    k = int(np.argmin(split_sse)) + 1
    floor = floor or effect_floor(clean)
    result = ChangePoint(
        detected=False,
        summary="",
        n_steps=t,
        alpha=alpha,
        floor=floor.value,
        floor_text=floor.text,
        steepest_from=float(steps[steepest]),
        steepest_to=float(steps[steepest + 1]),
        steepest_slope=float(diffs[steepest]),
    )
    if sse_const == 0.0:
        result.summary = "no transition: the curve is flat"
        return result

    result.step, result.last_before = float(steps[k]), float(steps[k - 1])
    result.before, result.after = float(means[:k].mean()), float(means[k:].mean())
    result.difference = result.after - result.before
    statistic = float(_likelihood_ratio(sse_const, float(split_sse[k - 1]), t))
    result.p_null = null_p_value(statistic, t)
    values = np.concatenate([list(clean[s].values()) for s in steps])
    if np.isin(values, (0.0, 1.0)).all():
        counts = np.array([len(clean[s]) for s in steps])
        result.p_null = max(result.p_null, binomial_null_p_value(statistic, float(values.mean()), counts))
    result.delta_bic = statistic - 2 * math.log(t)
    result.delta_bic_vs_line = _delta_bic(_line_sse(steps, means), float(split_sse[k - 1]), t, 1)

    boot, result.paired_bootstrap = _bootstrap_means(clean, steps, resamples, seed)
    if boot is not None:
        fitted = np.argmin(_split_sse(boot), axis=-1) + 1
        result.step_ci = percentile_interval(steps[fitted], method="inverted_cdf")  # observed steps
        before, after = boot[:, :k].mean(axis=1), boot[:, k:].mean(axis=1)
        result.before_ci, result.after_ci = percentile_interval(before), percentile_interval(after)
        result.difference_ci = percentile_interval(after - before)
    else:
        result.notes.append("one value per step: no bootstrap CIs, the null calibration and the floor decide")

    beyond_noise = result.p_null <= alpha
    above_floor = abs(result.difference) >= floor.value
    excludes_zero = result.difference_ci is None or not (result.difference_ci[0] <= 0.0 <= result.difference_ci[1])
    result.detected = beyond_noise and above_floor and excludes_zero
    result.summary = _summary(result, beyond_noise, above_floor, excludes_zero)
    return result


def _bootstrap_means(
    clean: dict[float, dict[str, float]], steps: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray | None, bool]:
    """(resamples x T) step means, resampling within steps (jointly by id when the ids match)."""
    if all(len(clean[s]) == 1 for s in steps):
        return None, False
    rng = generator(seed)
    ids = [sorted(clean[s]) for s in steps]
    if all(i == ids[0] for i in ids) and len(ids[0]) > 1:
        matrix = np.array([[clean[s][i] for s in steps] for i in ids[0]])  # ids x steps
        return resample(matrix, resamples, rng).mean(axis=1), True
    columns = []
    for s in steps:
        columns.append(resample(np.array(list(clean[s].values())), resamples, rng).mean(axis=1))
    return np.stack(columns, axis=1), False


def _fmt(x: float) -> str:
    return f"{x:g}" if float(x).is_integer() else f"{x:.3g}"


def _summary(r: ChangePoint, beyond_noise: bool, above_floor: bool, excludes_zero: bool) -> str:
    assert r.step is not None and r.before is not None and r.after is not None and r.difference is not None
    assert r.p_null is not None and r.delta_bic is not None
    where = f"step {_fmt(r.step)} (after step {_fmt(r.last_before)})"
    if r.step_ci:
        where += f", 95% CI [{_fmt(r.step_ci[0])}, {_fmt(r.step_ci[1])}]"
    levels = f"level {r.before:.3g} -> {r.after:.3g}"
    if r.difference_ci:
        levels += f" (difference {r.difference:+.3g}, 95% CI [{r.difference_ci[0]:+.3g}, {r.difference_ci[1]:+.3g}])"
    else:
        levels += f" (difference {r.difference:+.3g})"
    test = f"null p {r.p_null:.3g}, floor {r.floor_text}"
    if r.detected:
        kind = "abrupt" if (r.delta_bic_vs_line or 0) >= 2 else "gradual: a straight line fits about as well"
        return f"transition at {where}; {levels}; {test}; delta BIC {r.delta_bic:.1f} ({kind})"
    reasons = []
    if not beyond_noise:
        reasons.append(f"within noise: null p {r.p_null:.3g} > {r.alpha:g}")
    if not above_floor:
        reasons.append(f"change {abs(r.difference):.3g} below the floor {r.floor_text}")
    if not excludes_zero:
        reasons.append("the level difference's CI includes 0")
    return f"no transition ({'; '.join(reasons)}); best split at {where}; {levels}; {test}"
