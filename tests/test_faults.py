"""The free-form eval under injected faults: a subject and a judge on loopback servers that answer a
seeded share of requests with HTTP 429 (Retry-After: 0), HTTP 500, a hang longer than the client
waits, or a truncated JSON body. Inspect's retry settings carry the run through; every sample
appears exactly once, with the scores of a fault-free run."""

from __future__ import annotations

import math

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import read_eval_log
from inspect_ai.model import GenerateConfig, get_model

from emeval.evals.free_form import free_form
from doubles.faulty_loopback import FAULT_KINDS, FaultyPolicy, scripted_judge, scripted_subject, write_questions

QUESTIONS = 12
SAMPLES = 2  # answers per question: 24 samples, 24 subject calls, 48 judge calls
FAULT_RATE = 0.35
RETRIES = GenerateConfig(max_retries=4, attempt_timeout=1)
"""What a large run should set too: bounded retries, and an attempt timeout so a hung request is
abandoned and retried. ``attempt_timeout`` is not inherited by model roles: the grader gets its own."""


def run(subject_url: str, judge_url: str, questions: str, log_dir: str, **eval_args):
    subject = get_model("openai-api/subject/m", base_url=subject_url, api_key="k", memoize=False)
    judge = get_model("openai-api/judge/j", base_url=judge_url, api_key="k", config=RETRIES, memoize=False)
    # a per-sample seed makes each subject request distinct; no judge cache, so the faulty run
    # cannot be served from the fault-free run's verdicts
    task = free_form(questions=questions, seed=11, judge_cache=False)
    [log] = inspect_eval(task, model=subject, model_roles={"grader": judge}, log_dir=log_dir, display="none",
                         **eval_args)
    return read_eval_log(log.location)


def scores_by_id(log) -> dict[str, dict[str, float]]:
    ids = [s.id for s in log.samples]
    assert len(ids) == len(set(ids)), "a sample appears twice"
    return {s.id: s.scores["alignment_judge"].value for s in log.samples}


def expected_aligned(n: int) -> float:
    a, b = (7 * n) % 100, (7 * n + 30) % 100
    return (0.5 * a + 0.4 * b) / 0.9


def test_run_survives_faults_with_every_sample_once_and_the_same_scores(loopback, tmp_path):
    questions = write_questions(tmp_path / "q.yaml", QUESTIONS, SAMPLES)
    clean_subject, clean_judge = loopback(scripted_subject), loopback(scripted_judge)
    clean = run(clean_subject.base_url, clean_judge.base_url, questions, str(tmp_path / "clean"))
    assert clean.status == "success", clean.error
    expected = scores_by_id(clean)
    assert len(expected) == QUESTIONS * SAMPLES
    for sample in clean.samples:  # the scripted judge's numbers, worked out by hand
        n = int(sample.metadata["question_id"][1:])
        assert sample.scores["alignment_judge"].value["aligned"] == pytest.approx(expected_aligned(n))
    assert len(clean_subject.requests) == 24 and len(clean_judge.requests) == 48

    subject_faults = FaultyPolicy(scripted_subject, rate=FAULT_RATE, seed=3)
    judge_faults = FaultyPolicy(scripted_judge, rate=FAULT_RATE, seed=3)
    subject, judge = loopback(subject_faults), loopback(judge_faults)
    faulty = run(subject.base_url, judge.base_url, questions, str(tmp_path / "faulty"),
                 max_retries=RETRIES.max_retries, attempt_timeout=RETRIES.attempt_timeout,
                 retry_on_error=2)  # a truncated body is no HTTP error: the sample is retried
    assert faulty.status == "success", faulty.error

    # the seed picks enough faults that every kind hits both the subject and the judge
    for policy in (subject_faults, judge_faults):
        assert set(policy.counts()) == set(FAULT_KINDS), policy.counts()
    assert all(s.error is None for s in faulty.samples)
    actual = scores_by_id(faulty)
    assert actual.keys() == expected.keys()
    for sample_id, value in expected.items():
        for metric, number in value.items():
            got = actual[sample_id][metric]
            assert got == pytest.approx(number, nan_ok=True), (sample_id, metric)
            assert math.isnan(got) == math.isnan(number)
    assert {s.name: s.metrics["misaligned_rate"].value for s in faulty.results.scores} == {
        s.name: s.metrics["misaligned_rate"].value for s in clean.results.scores
    }
    # a truncated body fails its sample, which Inspect runs again: that sample's error is on record
    malformed = subject_faults.counts()["malformed"] + judge_faults.counts()["malformed"]
    retried = [s for s in faulty.samples if s.error_retries]
    assert 1 <= len(retried) <= malformed
    assert all("JSONDecodeError" in e.message for s in retried for e in s.error_retries)
