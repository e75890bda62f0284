"""Change-point detection on synthetic sweep curves whose transition (or its absence) is known."""

from __future__ import annotations

import numpy as np
import pytest

from emeval.changepoint import detect

STEPS = list(range(0, 100, 10))


def paired_curve(jump_at: int | None, jump: float, noise: float, questions: int = 12, seed: int = 0) -> dict:
    """Per-question values at each step: a fixed question effect, the jump, small per-step noise."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0.4, 0.2, questions)
    return {
        s: {f"q{i}": effect[i] + (jump if jump_at is not None and s >= jump_at else 0.0) + rng.normal(0, noise)
            for i in range(questions)}
        for s in STEPS
    }


def test_known_step_is_found_with_its_levels_and_ci() -> None:
    result = detect(paired_curve(jump_at=60, jump=0.3, noise=0.03))
    assert result.detected
    assert (result.step, result.last_before) == (60, 50)
    assert result.step_ci[0] <= 60 <= result.step_ci[1]
    assert result.difference == pytest.approx(0.3, abs=0.03)
    assert result.difference_ci[0] > 0
    assert result.after - result.before == pytest.approx(result.difference)
    assert result.paired_bootstrap
    assert (result.steepest_from, result.steepest_to) == (50, 60)
    assert result.steepest_slope == pytest.approx(0.03, abs=0.005)  # 0.3 over 10 steps
    assert result.summary.startswith("transition at step 60 (after step 50)")


def test_levels_are_the_means_of_the_step_means_on_each_side() -> None:
    curve = {0: [0.1, 0.3], 1: [0.2, 0.2], 2: [0.9, 0.7], 3: [0.8, 0.8], 4: [0.8, 0.9]}
    result = detect(curve)
    assert result.step == 2
    assert result.before == pytest.approx((0.2 + 0.2) / 2)
    assert result.after == pytest.approx((0.8 + 0.8 + 0.85) / 3)
    means = np.array([0.2, 0.2, 0.8, 0.8, 0.85])
    sse_const = np.sum((means - means.mean()) ** 2)
    sse_split = np.sum((means[2:] - means[2:].mean()) ** 2)
    expected = 5 * np.log((sse_const + 5e-12) / (sse_split + 5e-12)) - 2 * np.log(5)
    assert result.delta_bic == pytest.approx(expected)
    assert not result.paired_bootstrap  # list positions are not sample ids


def test_downward_transition() -> None:
    result = detect(paired_curve(jump_at=30, jump=-0.25, noise=0.02, seed=3))
    assert result.detected and result.step == 30 and result.difference < 0
    assert result.steepest_slope < 0


def test_no_step_says_no_detectable_transition() -> None:
    result = detect(paired_curve(jump_at=None, jump=0.0, noise=0.03, seed=1))
    assert not result.detected
    assert result.summary.startswith("no detectable transition")
    assert result.step is not None  # the best split is still reported


def test_noisy_small_jump_within_the_noise_is_not_a_transition() -> None:
    rng = np.random.default_rng(2)
    curve = {s: list(rng.normal(0.5 + (0.02 if s >= 50 else 0), 0.3, 20)) for s in STEPS}
    result = detect(curve)
    assert not result.detected


def test_flat_curve_and_too_few_steps() -> None:
    assert detect({s: [0.5, 0.5] for s in STEPS}).summary == "no detectable transition: the curve is flat"
    few = detect({0: [0.1], 10: [0.9]})
    assert not few.detected and "needs 3" in few.summary


def test_one_value_per_step_is_decided_by_bic_alone() -> None:
    result = detect({s: [0.9 if s >= 40 else 0.1] for s in STEPS})
    assert result.detected and result.step == 40 and result.step_ci is None
    assert any("no bootstrap" in note for note in result.notes)


def test_steady_drift_is_labelled_gradual() -> None:
    rng = np.random.default_rng(4)
    result = detect({s: list(s / 100 + rng.normal(0, 0.01, 10)) for s in STEPS})
    assert result.detected  # the level does change...
    assert "gradual" in result.summary  # ...but a straight line explains it as well


def test_uneven_steps_and_nan_values() -> None:
    curve = {0: [0.1, float("nan"), 0.12], 5: [0.11, 0.09], 50: [0.1, 0.12], 55: [0.8, 0.82], 500: [0.81, 0.79, 0.8]}
    result = detect(curve)
    assert result.detected and result.step == 55 and result.last_before == 50
    assert result.steepest_from == 50 and result.steepest_to == 55
