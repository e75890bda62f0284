"""Phase-transition detection on a sweep curve: one change point, its bootstrap CI, the steepest step.

Model: the curve is the mean of a metric at each training step. A transition is a change in level:
the step means are fit by one constant (no change) and by two constants split between
consecutive steps (least squares over every split; exact, since a curve has at most a few hundred
steps). The split's first step after the break is the *change point*.

Test (defined here and in the README): a transition is reported when both
1. the two-level fit beats the constant on the Bayesian information criterion by at least
   ``MIN_DELTA_BIC`` = 6 ("strong" on the Kass-Raftery scale), Gaussian errors with unknown
   variance: ``delta_bic = T ln(SSE_const / SSE_split) - 2 ln T`` (the split adds a level and a
   location), over the T step means; and
2. the 95% bootstrap CI of the level difference (after - before, at the fitted change point)
   excludes 0.
Otherwise the result says "no detectable transition" (the best split is still reported).

Bootstrap (2000 resamples, seed 0): samples are resampled within each step. When every step holds
the same sample ids (the same probe questions, the same question x repeat ids), ids are resampled
jointly across steps, keeping the pairing, so the between-question spread does not count as noise.
Each resample refits the change point: its 2.5/97.5 percentiles (as observed steps) are the CI on
the location. Levels and their difference get percentile CIs at the fitted location.

Steepest slope: the pair of consecutive steps with the largest absolute change of the mean per
training step. ``abruptness``: how much better the two-level fit is than a straight line
(``delta_bic`` of split vs line); a steady drift also moves the level, and this tells them apart.

A piecewise-constant least-squares fit with exhaustive search is what ``ruptures``' ``Dynp`` with
an ``l2`` cost computes for one break; numpy does it in a few lines and vectorises over the
bootstrap resamples, so no extra dependency.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from emeval.metrics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL

MIN_DELTA_BIC = 6.0
MIN_STEPS = 3


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


def _percentiles(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def detect(
    samples: dict[float, dict[str, float]] | dict[float, list[float]],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    min_delta_bic: float = MIN_DELTA_BIC,
) -> ChangePoint:
    """Change point of a curve given its per-sample values at each step.

    ``samples`` maps step -> values: a list (independent samples) or a dict sample id -> value
    (paired across steps when every step has the same ids). NaN values are ignored.
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
    result = ChangePoint(
        detected=False,
        summary="",
        n_steps=t,
        steepest_from=float(steps[steepest]),
        steepest_to=float(steps[steepest + 1]),
        steepest_slope=float(diffs[steepest]),
    )
    if sse_const == 0.0:
        result.summary = "no detectable transition: the curve is flat"
        return result

    result.step, result.last_before = float(steps[k]), float(steps[k - 1])
    result.before, result.after = float(means[:k].mean()), float(means[k:].mean())
    result.difference = result.after - result.before
    result.delta_bic = _delta_bic(sse_const, float(split_sse[k - 1]), t, 2)
    result.delta_bic_vs_line = _delta_bic(_line_sse(steps, means), float(split_sse[k - 1]), t, 1)

    boot, result.paired_bootstrap = _bootstrap_means(clean, steps, resamples, seed)
    if boot is not None:
        fitted = np.argmin(_split_sse(boot), axis=-1) + 1
        located = steps[fitted]
        result.step_ci = (
            float(np.quantile(located, (1 - CI_LEVEL) / 2, method="inverted_cdf")),
            float(np.quantile(located, 1 - (1 - CI_LEVEL) / 2, method="inverted_cdf")),
        )
        before, after = boot[:, :k].mean(axis=1), boot[:, k:].mean(axis=1)
        result.before_ci, result.after_ci = _percentiles(before), _percentiles(after)
        result.difference_ci = _percentiles(after - before)
    else:
        result.notes.append("one value per step: no bootstrap CIs, the BIC test alone decides")

    strong = result.delta_bic >= min_delta_bic
    excludes_zero = result.difference_ci is None or not (result.difference_ci[0] <= 0.0 <= result.difference_ci[1])
    result.detected = strong and excludes_zero
    result.summary = _summary(result, strong, excludes_zero, min_delta_bic)
    return result


def _bootstrap_means(
    clean: dict[float, dict[str, float]], steps: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray | None, bool]:
    """(resamples x T) step means, resampling within steps (jointly by id when the ids match)."""
    if all(len(clean[s]) == 1 for s in steps):
        return None, False
    rng = np.random.default_rng(seed)
    ids = [sorted(clean[s]) for s in steps]
    if all(i == ids[0] for i in ids) and len(ids[0]) > 1:
        matrix = np.array([[clean[s][i] for s in steps] for i in ids[0]])  # ids x steps
        pick = rng.integers(0, len(ids[0]), size=(resamples, len(ids[0])))
        return matrix[pick].mean(axis=1), True
    columns = []
    for s in steps:
        values = np.array(list(clean[s].values()))
        pick = rng.integers(0, len(values), size=(resamples, len(values)))
        columns.append(values[pick].mean(axis=1))
    return np.stack(columns, axis=1), False


def _fmt(x: float) -> str:
    return f"{x:g}" if float(x).is_integer() else f"{x:.3g}"


def _summary(r: ChangePoint, strong: bool, excludes_zero: bool, min_delta_bic: float) -> str:
    assert r.step is not None and r.before is not None and r.after is not None and r.delta_bic is not None
    where = f"step {_fmt(r.step)} (after step {_fmt(r.last_before)})"
    if r.step_ci:
        where += f", 95% CI [{_fmt(r.step_ci[0])}, {_fmt(r.step_ci[1])}]"
    levels = f"level {r.before:.3g} -> {r.after:.3g}"
    if r.difference_ci:
        levels += f" (difference {r.difference:+.3g}, 95% CI [{r.difference_ci[0]:+.3g}, {r.difference_ci[1]:+.3g}])"
    if r.detected:
        kind = "abrupt" if (r.delta_bic_vs_line or 0) >= 2 else "gradual: a straight line fits about as well"
        return f"transition at {where}; {levels}; delta BIC {r.delta_bic:.1f} ({kind})"
    reasons = []
    if not strong:
        reasons.append(f"delta BIC {r.delta_bic:.1f} < {min_delta_bic:g}")
    if not excludes_zero:
        reasons.append("the level difference's CI includes 0")
    return f"no detectable transition ({'; '.join(reasons)}); best split at {where}; {levels}"
