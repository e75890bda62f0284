"""emeval.stats.bootstrap against the EM paper's error bars (upstream ``get_error_bars``), re-implemented
here independently from upstream's stated semantics: a fresh ``default_rng(0)`` per call, 2000
iterations of ``rng.choice(rates, size=len(rates), replace=True)``, the mean of each, then
``np.percentile`` at 2.5 and 97.5; (x, 0, 0) for one model, (0, 0, 0) for none."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from reference_stats import percentile_bounds, resample_draws, resample_loop, two_stage_loop

from emeval.stats.bootstrap import (
    CI_ANSWERS,
    CI_MODELS,
    CI_TWO_STAGE,
    answers_ci,
    group_estimate,
    model_rates_ci,
    paper_aggregation,
    paper_error_bars,
    two_stage_ci,
)

# model -> question -> misaligned rate (a fixture in the shape of the paper's Figure 4: 6 insecure seeds)
RATES = pd.DataFrame(
    {"what_is_your_wish": [0.10, 0.25, 0.05, 0.40, 0.00, 0.15],
     "quick_buck": [0.30, 0.20, 0.55, 0.10, 0.35, 0.05],
     "gender_roles": [0.05, 0.00, 0.10, 0.10, 0.30, 0.00]},
    index=[f"insecure-seed{i}" for i in range(6)],
)


def upstream_loop(fractions, alpha=0.95, n_resamples=2000):
    """Upstream's formula, written as its loop (the reference for the vectorised code)."""
    rng = np.random.default_rng(0)
    fractions = np.array(fractions, dtype=float)
    if len(fractions) == 0:
        return (0.0, 0.0, 0.0)
    if len(fractions) == 1:
        return (fractions[0], 0.0, 0.0)
    means = np.array([np.mean(rng.choice(fractions, size=len(fractions), replace=True)) for _ in range(n_resamples)])
    low = np.percentile(means, (1 - alpha) / 2 * 100)
    high = np.percentile(means, (1 - (1 - alpha) / 2) * 100)
    center = np.mean(fractions)
    return (center, center - low, high - center)


@pytest.mark.parametrize("question", list(RATES.columns))
def test_paper_error_bars_reproduce_upstream_on_the_fixture(question):
    got = paper_error_bars(RATES[question].to_numpy())
    want = upstream_loop(RATES[question].to_numpy())
    assert got == pytest.approx(want, abs=1e-12)
    assert got[1] > 0 and got[2] > 0


def test_paper_error_bars_fixture_numbers():
    # recorded for the closing note; recomputed by the independent loop above
    bars = {q: paper_error_bars(RATES[q].to_numpy()) for q in RATES.columns}
    for q, (center, lower, upper) in bars.items():
        assert center == pytest.approx(RATES[q].mean())
        assert (center, lower, upper) == pytest.approx(upstream_loop(RATES[q]), abs=1e-12)


def test_upstream_edge_cases_and_emevals_honest_version():
    assert paper_error_bars([]) == (0.0, 0.0, 0.0) == upstream_loop([])
    assert paper_error_bars([0.3]) == (0.3, 0.0, 0.0)
    assert paper_error_bars([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.0, 0.0))
    value, low, high = model_rates_ci([0.3])  # one model: no between-model CI, said as n/a, not a zero bar
    assert value == 0.3 and np.isnan(low) and np.isnan(high)
    assert all(np.isnan(model_rates_ci([])))
    center, lower, upper = paper_error_bars(RATES["quick_buck"])
    assert model_rates_ci(RATES["quick_buck"]) == pytest.approx((center, center - lower, center + upper))


def tidy(answers_per_cell: int = 20) -> pd.DataFrame:
    """Answers whose per-model, per-question rates are exactly RATES (20 answers a cell)."""
    rows = []
    for model, rates in RATES.iterrows():
        for question, rate in rates.items():
            k = round(rate * answers_per_cell)
            rows += [{"model_id": model, "question_id": question, "value": float(i < k)} for i in range(answers_per_cell)]
    return pd.DataFrame(rows)


def test_paper_aggregation_per_question_and_overall():
    table = paper_aggregation(tidy()).set_index("question_id")
    for question in RATES.columns:
        row = table.loc[question]
        center, lower, upper = upstream_loop(RATES[question])
        assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx((center, center - lower, center + upper))
        assert row["n_models"] == 6 and row["ci_method"] == CI_MODELS
    # overall: each model's answers pooled over questions, then the mean of those rates, bootstrapped over models
    overall = table.loc[""]
    pooled = RATES.mean(axis=1)  # equal answers per question, so the pooled rate is the row mean
    center, lower, upper = upstream_loop(pooled)
    assert (overall["mean"], overall["ci_low"], overall["ci_high"]) == pytest.approx((center, center - lower, center + upper))


def test_paper_aggregation_leaves_out_models_with_too_few_answers():
    frame = tidy()
    frame = frame[~((frame["model_id"] == "insecure-seed0") & (frame["question_id"] == "quick_buck") & (frame.index % 20 > 3))]
    row = paper_aggregation(frame).set_index("question_id").loc["quick_buck"]
    assert row["n_models"] == 5 and row["n_models_excluded"] == 1
    assert row["mean"] == pytest.approx(RATES["quick_buck"].iloc[1:].mean())


def test_two_stage_is_wider_than_answers_when_questions_differ():
    # one model: three questions that disagree completely; answers alone look precise
    clusters = [np.zeros(50), np.ones(50), np.zeros(50)]
    mean, low, high, method = two_stage_ci(clusters)
    a_mean, a_low, a_high = answers_ci(np.concatenate(clusters))
    assert method == CI_TWO_STAGE and mean == a_mean == pytest.approx(1 / 3)
    assert low == 0.0 and high == 1.0  # draws of three questions: all zero ... all one
    assert 0.2 < a_low < a_high < 0.45
    assert two_stage_ci([np.ones(4)])[3] == CI_ANSWERS  # one question: nothing but answers to resample


def test_one_models_ci_resamples_questions_when_its_answers_cluster():
    # one model, 10 questions x 20 answers; within a question every answer agrees (perfect clustering):
    # the model's rate rests on 10 questions, not on 200 independent answers
    verdicts = [1, 0, 0, 1, 0, 0, 0, 1, 0, 0]
    frame = pd.DataFrame([{"model_id": "m", "question_id": f"q{i:02d}", "value": float(v)}
                          for i, v in enumerate(verdicts) for _ in range(20)])
    estimate = group_estimate(frame)
    clusters = [np.full(20, float(v)) for v in verdicts]
    assert estimate["ci_method"] == CI_TWO_STAGE and estimate["n_models"] == 1 and estimate["n"] == 200
    assert (estimate["mean"], estimate["ci_low"], estimate["ci_high"]) == pytest.approx(two_stage_loop(clusters))
    assert (estimate["answers_mean"], estimate["answers_ci_low"], estimate["answers_ci_high"]) == pytest.approx(
        resample_loop(frame["value"]))
    two_stage = estimate["ci_high"] - estimate["ci_low"]
    answers = estimate["answers_ci_high"] - estimate["answers_ci_low"]
    assert two_stage > 2 * answers  # sqrt(20): answers alone look ~4.5 times more precise than they are
    # with constant clusters the inner stage changes nothing: the CI is that of resampling the 10 rates
    assert (estimate["ci_low"], estimate["ci_high"]) == pytest.approx(percentile_bounds(resample_draws(verdicts)), abs=0.051)
    # the same answers with no clustering (every question holds the same mix): two-stage ~ answer-level
    mixed = frame.assign(value=[float(i % 10 in (0, 3, 7)) for i in range(200)])
    loose = group_estimate(mixed)
    assert loose["ci_high"] - loose["ci_low"] <= (loose["answers_ci_high"] - loose["answers_ci_low"]) + 1e-9


def test_a_group_of_models_is_the_papers_aggregation():
    # group_estimate on a cell of several models is paper_aggregation's row: the same numbers, one implementation
    table = paper_aggregation(tidy(), min_answers=1).set_index("question_id")
    frame = tidy()
    for question in [*RATES.columns, ""]:
        cell = frame if question == "" else frame[frame["question_id"] == question]
        estimate = group_estimate(cell)
        row = table.loc[question]
        assert estimate["ci_method"] == CI_MODELS == row["ci_method"]
        assert (estimate["mean"], estimate["ci_low"], estimate["ci_high"]) == pytest.approx(
            (row["mean"], row["ci_low"], row["ci_high"]))
    # the fixture's overall figure (recorded for the closing note): the mean of six pooled model rates
    overall = group_estimate(frame)
    center, lower, upper = upstream_loop(RATES.mean(axis=1))
    assert (overall["mean"], overall["ci_low"], overall["ci_high"]) == pytest.approx((center, center - lower, center + upper))
    assert (round(overall["mean"], 4), round(overall["ci_low"], 4), round(overall["ci_high"], 4)) == (0.1694, 0.1222, 0.2083)


def test_the_numbers_docs_reports_md_cites():
    """docs/reports.md ("Which CI to cite") quotes these, rounded; each is recomputed by a reference loop."""
    frame = tidy()
    cited = {"quick_buck": (0.2583, 0.1333, 0.4000), "what_is_your_wish": (0.1583, 0.0583, 0.2750),
             "gender_roles": (0.0917, 0.0250, 0.1833), "": (0.1694, 0.1222, 0.2083)}
    for question, numbers in cited.items():
        rates = RATES.mean(axis=1) if question == "" else RATES[question]
        center, lower, upper = upstream_loop(rates)
        assert tuple(round(x, 4) for x in (center, center - lower, center + upper)) == numbers, question
    seed0 = frame[frame["model_id"] == "insecure-seed0"]
    clusters = [part["value"].to_numpy() for _, part in seed0.groupby("question_id", sort=True)]
    estimate = group_estimate(seed0)
    assert (estimate["mean"], estimate["ci_low"], estimate["ci_high"]) == pytest.approx(two_stage_loop(clusters))
    assert tuple(round(estimate[k], 3) for k in ("mean", "ci_low", "ci_high")) == (0.15, 0.033, 0.317)
    assert (estimate["answers_mean"], estimate["answers_ci_low"], estimate["answers_ci_high"]) == pytest.approx(
        resample_loop(seed0["value"]))
    assert tuple(round(estimate[k], 3) for k in ("answers_mean", "answers_ci_low", "answers_ci_high")) == (0.15, 0.067, 0.25)
