"""Hostile judge outputs never become numbers.

Every judge method (0-100 from log-probabilities, whole-number and digit-split; 0-100 sampled;
categorical labels) gets non-finite, positive, duplicated, over-1-mass, missing, oversized and
junk log-probabilities from a loopback server that sends them exactly (``NaN`` / ``Infinity`` in
the JSON, as a broken server would). Each is an unscorable verdict with its reason (or, for
duplicates, a merge by max), and ``inspect eval evals/free_form.py`` by path shows the counts and
finite metrics in the log, with ``emeval summary`` saying "n/a (n=0)" where nothing is left.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from inspect_ai.log import read_eval_log
from inspect_ai.model import get_model
from inspect_ai.scorer import SampleScore, Score

from emeval.benchmarks.completions import completion_summary
from emeval.judging.judge import MASS_TOLERANCE, TOP_LOGPROBS, check_logprobs, judge_0_100, judge_label
from emeval.stats.metrics import em_summary, label_rates, with_ci
from emeval.benchmarks.probes import probe_summary
from emeval.benchmarks.strong_reject import strong_reject_summary
from emeval.benchmarks.truthfulqa import truthfulqa_summary
from doubles.loopback import Malformed, message_text, prefill
from doubles.scripted import answer_in

ROOT = Path(__file__).resolve().parents[2]
NAN, INF = float("nan"), float("inf")
log = math.log

# -- check_logprobs ------------------------------------------------------------------------------

INVALID = [
    ([], "no top log-probabilities"),
    ([("85", NAN)], "non-finite log-probability nan for token '85'"),
    ([("85", log(0.5)), ("90", NAN)], "non-finite"),
    ([("85", INF)], "non-finite log-probability inf"),
    ([("85", -INF), ("90", log(0.5))], "non-finite log-probability -inf"),
    ([("85", 0.5)], "positive log-probability 0.5"),
    ([("85", 1e300)], "positive log-probability"),
    ([("85", log(0.7)), ("90", log(0.6))], "sum to probability 1.3000 > 1"),
    ([("85", log(0.6)), ("85", log(0.6)), (" 85", log(0.6))], "sum to probability 1.2000 > 1"),  # distinct tokens
    ([(str(i), -10.0) for i in range(1000)], "1000 top log-probabilities returned, 20 requested"),
    ([("85", 0.0), ("x" * 10_000, log(0.01))], "sum to probability 1.0100 > 1"),
]


@pytest.mark.parametrize("pairs, problem", INVALID)
def test_not_a_distribution_is_named(pairs, problem):
    checked = check_logprobs(pairs)
    assert checked.problem is not None and problem in checked.problem
    assert len(checked.problem) < 200  # a huge token is shortened in the reason


def test_duplicates_merge_by_max_not_sum():
    checked = check_logprobs([("10", log(0.3)), ("90", log(0.3)), ("10", log(0.2)), ("10", log(0.3))])
    assert checked.problem is None
    assert checked.pairs == [("10", pytest.approx(log(0.3))), ("90", pytest.approx(log(0.3)))]
    assert checked.warnings == ["token '10' listed 3 times: kept its largest log-probability"]


def test_rounding_noise_is_tolerated():
    assert check_logprobs([("85", 1e-7)]).problem is None  # log-probability 0 rounded up
    assert check_logprobs([("85", log(0.6)), ("90", log(0.4 + 0.9 * MASS_TOLERANCE))]).problem is None
    assert check_logprobs([("85", log(0.6)), ("90", log(0.4 + 1.1 * MASS_TOLERANCE))]).problem is not None
    assert check_logprobs([(str(i), log(0.04)) for i in range(TOP_LOGPROBS)]).problem is None


# -- each method against a server that sends exactly these numbers ---------------------------------


def raw_reply(tops: list[tuple[str, float]], content: str = "85") -> Malformed:
    """A chat completion whose first position has exactly ``tops`` (JSON NaN / Infinity allowed)."""
    top_logprobs = [{"token": t, "logprob": lp, "bytes": None} for t, lp in tops]
    data = {
        "id": "chatcmpl-raw", "object": "chat.completion", "created": int(time.time()), "model": "judge",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
                     "logprobs": {"content": [{"token": content, "logprob": 0.0, "bytes": None,
                                               "top_logprobs": top_logprobs}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    return Malformed(json.dumps(data), 200)


def judge_on(server):
    return get_model("openai-api/loop/hostile-judge", base_url=server.base_url, api_key="k", memoize=False)


def verdict_of(loopback, tops, **kwargs):
    server = loopback(lambda body: raw_reply(tops))
    return asyncio.run(judge_0_100(judge_on(server), "Rate it.", cache=False, **kwargs))


HOSTILE = {
    "nan": [("85", NAN), ("90", log(0.1))],
    "plus_inf": [("85", INF)],
    "minus_inf": [("85", -INF), ("90", log(0.9))],
    "positive": [("85", 2.3)],
    "mass_above_1": [("85", log(0.8)), ("15", log(0.8))],
    "empty": [],
    "huge": [(f"tok{i}", -12.0) for i in range(5000)],
}


@pytest.mark.parametrize("case", HOSTILE)
def test_logprob_judge_hostile_is_unscorable_with_reason(loopback, case):
    verdict = verdict_of(loopback, HOSTILE[case], digits="whole", method="logprob")
    assert verdict.score is None and verdict.category == "unscorable" and verdict.invalid_output
    assert verdict.reason.startswith("invalid judge output: ")
    json.dumps(verdict.as_metadata(), allow_nan=False)  # the evidence is loggable as strict JSON


def test_logprob_judge_duplicates_are_merged_by_max(loopback):
    verdict = verdict_of(loopback, [("10", log(0.3)), ("10", log(0.3)), ("90", log(0.3))], digits="whole")
    assert verdict.score == pytest.approx(50.0)  # a sum would give (10 * .6 + 90 * .3) / .9 = 36.7
    assert verdict.numeric_mass == pytest.approx(0.6) and "listed 2 times" in verdict.warnings[0]


def test_logprob_judge_junk_tokens_are_not_numbers(loopback):
    junk = [("٨٥", log(0.1)), ("８５", log(0.1)), ("1e2", log(0.1)), ("+50", log(0.05)), ("-5", log(0.05)),
            ("85abc", log(0.05)), ("\x00", log(0.05)), ("²", log(0.05)), ("100.0", log(0.05)), ("101", log(0.05))]
    verdict = verdict_of(loopback, junk + [("40", log(0.3))], digits="whole")
    assert verdict.score == 40.0 and verdict.numeric_mass == pytest.approx(0.3)
    only_junk = verdict_of(loopback, junk, digits="whole")
    assert only_junk.score is None and only_junk.category == "unscorable" and not only_junk.invalid_output


@pytest.mark.parametrize("case", ["nan", "positive", "mass_above_1", "empty", "huge"])
def test_digit_split_continuation_hostile_is_unscorable(loopback, case):
    root = [("8", log(0.9)), ("1", log(0.05))]

    def policy(body):
        return raw_reply(HOSTILE[case] if prefill(body) == "8" else root, content="8")

    server = loopback(policy)
    verdict = asyncio.run(judge_0_100(judge_on(server), "Rate it.", digits="split", method="logprob", cache=False))
    assert verdict.score is None and verdict.invalid_output and verdict.tokenizer == "digits"
    assert "after the prefix '8'" in verdict.reason


def test_digit_split_root_hostile_is_unscorable(loopback):
    verdict = verdict_of(loopback, [("8", log(0.9)), ("8", log(0.9)), ("1", 0.3)], digits="split")
    assert verdict.score is None and verdict.invalid_output and "positive" in verdict.reason


def test_sampled_judge_reads_only_plain_integers(loopback):
    draws = {0: "٨٥", 1: "NaN", 2: "inf", 3: "1e2", 4: "-5"}
    server = loopback(lambda body: draws[body["seed"]])
    verdict = asyncio.run(judge_0_100(judge_on(server), "Rate it.", method="sampled", cache=False))
    assert verdict.score is None and verdict.category == "unscorable" and "no numeric verdict" in verdict.reason
    mixed = {0: "85", 1: "101", 2: "85.5", 3: "85", 4: "x" * 10_000}
    server = loopback(lambda body: mixed[body["seed"]])
    verdict = asyncio.run(judge_0_100(judge_on(server), "Rate it.", method="sampled", cache=False))
    assert verdict.score == 85.0 and verdict.numeric_mass == pytest.approx(2 / 5)


LABELS = ["TRUE", "FALSE", "UNKNOWN"]


@pytest.mark.parametrize("case", ["nan", "plus_inf", "minus_inf", "positive", "empty", "huge"])
def test_label_judge_hostile_is_unscorable(loopback, case):
    tops = [(t.replace("85", "TRUE"), lp) for t, lp in HOSTILE[case]]
    server = loopback(lambda body: raw_reply(tops, content="TRUE"))
    verdict = asyncio.run(judge_label(judge_on(server), "True?", LABELS, method="logprob", cache=False))
    assert verdict.label is None and verdict.invalid_output and verdict.reason.startswith("invalid judge output")
    json.dumps(verdict.as_metadata(), allow_nan=False)


def test_label_judge_mass_above_1_and_duplicates(loopback):
    server = loopback(lambda body: raw_reply([("TRUE", log(0.7)), ("FALSE", log(0.7))], content="TRUE"))
    over = asyncio.run(judge_label(judge_on(server), "True?", LABELS, method="logprob", cache=False))
    assert over.label is None and "sum to probability 1.4000" in over.reason
    tops = [("F", log(0.4)), ("TRUE", log(0.3)), ("TRUE", log(0.3)), ("TRUE", log(0.3))]
    server = loopback(lambda body: raw_reply(tops, content="F"))
    merged = asyncio.run(judge_label(judge_on(server), "True?", LABELS, method="logprob", cache=False))
    assert merged.label == "FALSE"  # a sum would make TRUE 0.9 and the winner
    assert merged.probabilities["TRUE"] == pytest.approx(0.3 / 0.7)


# -- end to end: inspect eval evals/free_form.py by path ----------------------------------------------

ANSWERS = {  # question -> the subject's answer, which picks the judge's distribution
    "Q nan?": "ANS_NAN", "Q inf?": "ANS_INF", "Q positive?": "ANS_POS", "Q mass?": "ANS_MASS",
    "Q empty?": "ANS_EMPTY", "Q huge?": "ANS_HUGE", "Q dup?": "ANS_DUP", "Q fine?": "ANS_FINE",
}
ALIGNED_TOPS = {
    "ANS_NAN": HOSTILE["nan"], "ANS_INF": HOSTILE["plus_inf"], "ANS_POS": HOSTILE["positive"],
    "ANS_MASS": HOSTILE["mass_above_1"], "ANS_EMPTY": [], "ANS_HUGE": HOSTILE["huge"],
    "ANS_DUP": [("10", log(0.45)), ("10", log(0.45)), ("90", log(0.45))],  # merged: 50, mass 0.9
    "ANS_FINE": [("20", log(0.5)), ("10", log(0.5))],  # 15: misaligned
}
COHERENT_TOPS = [("90", log(0.95))]


def run_free_form(loopback, tmp_path, answers: dict[str, str]) -> tuple[Path, dict]:
    questions = tmp_path / "questions.yaml"
    questions.write_text("".join(f"- id: {a.lower()}\n  paraphrases: ['{q}']\n" for q, a in answers.items()))
    subject = loopback(lambda body: answers[message_text(body["messages"][-1])])

    def judge(body):
        prompt = message_text(body["messages"][-1])
        answer = answer_in(prompt)
        return raw_reply(COHERENT_TOPS if "coheren" in prompt else ALIGNED_TOPS[answer])

    judge_server = loopback(judge)
    env = {**os.environ, "SUBJ_BASE_URL": subject.base_url, "SUBJ_API_KEY": "k",
           "JUDGE_BASE_URL": judge_server.base_url, "JUDGE_API_KEY": "k"}
    log_dir = tmp_path / "logs"
    done = subprocess.run(
        [sys.executable, "-m", "inspect_ai", "eval", "evals/free_form.py", "--model", "openai-api/subj/m",
         "--model-role", "grader=openai-api/judge/j", "-T", f"questions={questions}", "-T", "judge_cache=false",
         "--log-dir", str(log_dir), "--display", "none"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = log_dir.glob("*.eval")
    return path, env


def test_free_form_by_path_counts_hostile_verdicts_and_keeps_metrics_finite(loopback, tmp_path):
    path, _ = run_free_form(loopback, tmp_path, ANSWERS)
    result = read_eval_log(str(path))
    assert result.status == "success", result.error
    scores = {s.output.completion: s.scores["alignment_judge"] for s in result.samples}
    for answer in ("ANS_NAN", "ANS_INF", "ANS_POS", "ANS_MASS", "ANS_EMPTY", "ANS_HUGE"):
        score = scores[answer]
        assert score.metadata["category"] == "unscorable", answer
        assert score.value["invalid_judge_output"] == 1 and score.value["is_unscorable"] == 1
        assert math.isnan(score.value["aligned"]) or score.value["aligned"] is None
        assert "invalid judge output" in score.explanation
        assert score.metadata["verdicts"]["aligned"]["reason"].startswith("invalid judge output")
    assert scores["ANS_NAN"].metadata["verdicts"]["aligned"]["top_logprobs"][0] == ["85", "nan"]  # evidence kept
    assert scores["ANS_DUP"].value["aligned"] == pytest.approx(50.0)
    assert scores["ANS_FINE"].value["aligned"] == pytest.approx(15.0)
    metrics = {n: m.value for s in result.results.scores for n, m in s.metrics.items()}
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert (metrics["n_answers"], metrics["n_judged"], metrics["n_unscorable"], metrics["n_invalid_judge_output"]) == (
        8, 2, 6, 6)
    assert metrics["mean_aligned"] == pytest.approx((50 + 15) / 2)
    assert metrics["misaligned_rate"] == pytest.approx(0.5) and metrics["n_misaligned"] == 1


def test_nothing_scorable_is_n_a_not_nan(loopback, tmp_path):
    path, env = run_free_form(loopback, tmp_path, {"Q nan?": "ANS_NAN", "Q mass?": "ANS_MASS"})
    result = read_eval_log(str(path))
    assert result.status == "success", result.error
    metrics = {n: m.value for s in result.results.scores for n, m in s.metrics.items()}
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    for name in ("misaligned_rate", "coherent_rate", "mean_aligned", "mean_aligned_ci_low"):
        assert name not in metrics
    assert metrics["n_judged"] == 0 and metrics["n_coherent"] == 0 and metrics["n_invalid_judge_output"] == 2
    shown = subprocess.run([str(Path(sys.executable).parent / "emeval"), "summary", str(path)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 4, shown.stderr[-2000:]  # no measurable result: flagged, never a silent 0
    assert shown.stdout.count("n/a (n=0)") == 3 and "nan" not in shown.stdout.lower()
    assert "alignment_judge misaligned rate rests on n = 0" in " ".join(shown.stdout.split())
    assert "of which invalid judge output" in shown.stdout


# -- no metric is NaN or infinite ----------------------------------------------------------------------


def test_with_ci_leaves_out_what_has_no_number():
    assert with_ci("rate", []) == {} and with_ci("rate", [NAN, NAN]) == {}
    assert with_ci("lp", [-1.0, -INF, NAN]) == {"lp_n_infinite": 1.0}
    assert with_ci("rate", [NAN, 1.0, 0.0])["rate"] == 0.5


def _scores(values: list[dict], metadata: dict | None = None) -> list[SampleScore]:
    return [SampleScore(score=Score(value=v), sample_id=i, sample_metadata=metadata or {"question_id": "q",
            "category": "c", "probe_set": "s", "label": "l", "game": "g"}) for i, v in enumerate(values)]


EMPTY_VALUES = {  # one sample each, every statistic undefined (NaN where a number would go)
    "em_summary": (em_summary(), {"aligned": NAN, "coherent": NAN, "coherent_answer": NAN, "misaligned": NAN,
                                  "is_code": 0.0, "is_refusal": 0.0, "is_unscorable": 1.0,
                                  "invalid_judge_output": 1.0, "reasoning_misaligned": NAN}),
    "label_rates": (label_rates(LABELS), {"is_TRUE": NAN, "is_FALSE": NAN, "is_UNKNOWN": NAN,
                                          "is_unscorable": 1.0, "invalid_judge_output": 1.0}),
    "strong_reject": (strong_reject_summary(), {"score": NAN, "refused": NAN, "judge_error": 1.0,
                                                "parse_warning": 0.0}),
    "truthfulqa": (truthfulqa_summary(["truthful"], ["judge_error"]), {"truthful": NAN, "judge_error": 1.0}),
    "probes": (probe_summary(), {"p_misaligned": NAN, "picked_misaligned": NAN, "p_any_choice": NAN,
                                 "unscorable": 1.0}),
    "completions": (completion_summary(), {"logprob": -INF, "logprob_per_token": -INF}),
}


@pytest.mark.parametrize("name", EMPTY_VALUES)
def test_metrics_with_nothing_to_average_are_finite(name):
    compute, value = EMPTY_VALUES[name]
    for scores in (_scores([value]), _scores([value, value])):
        result = compute(scores)
        assert result and all(math.isfinite(v) for v in result.values()), result


def test_machiavelli_summary_with_nothing_to_average_is_finite():
    from emeval.benchmarks.machiavelli.scoring import COUNT_KEYS
    from emeval.benchmarks.machiavelli.task import machiavelli_summary

    load_task_module(ROOT / "evals" / "machiavelli.py")  # the task file loads by path
    value = {k: NAN for k in COUNT_KEYS} | {"decisions": 0.0, "fallback_actions": 0.0, "finished": NAN}
    result = machiavelli_summary()(_scores([value]))
    assert result["n_games"] == 1 and all(math.isfinite(v) for v in result.values()), result


def load_task_module(path: Path):
    """A task file loaded by path, as Inspect loads it (a module not in sys.modules)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"task_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
