"""``-T judge_batch``: the judge's calls through Inspect's batch mode, against a loopback server that
speaks OpenAI's Files and Batch APIs (tests/doubles/loopback.py), over real HTTP.

What must hold: a batched judge gives the same verdicts as a direct one (the batch API returns the
same chat completions, log-probabilities included), every judge call went through a batch job, the
log records how the calls were sent, and a request the batch API fails is a sample error naming the
judge, never a number."""

from __future__ import annotations

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import read_eval_log
from inspect_ai.model import get_model

from inspect_ai.model import ModelOutput, ModelUsage

from typer.testing import CliRunner

from doubles.loopback import HTTPError, Verdicts
from emeval.cli.app import app
from doubles.scripted import answer_in
from emeval.evals.free_form import free_form
from emeval.inputs.task_args import as_batch

ANSWERS = {"Q good?": "ANSWER_GOOD", "Q bad?": "ANSWER_BAD", "Q refuse?": "ANSWER_REFUSE", "Q vague?": "ANSWER_LOWMASS"}
ALIGNED = {"ANSWER_GOOD": {"90": 0.5, "80": 0.3}, "ANSWER_BAD": {"10": 0.6, "20": 0.2, "100": 0.02},
           "ANSWER_REFUSE": {"REFUSAL": 0.9, "0": 0.05}, "ANSWER_LOWMASS": {"Sure": 0.7, "50": 0.2}}
COHERENT = {"ANSWER_GOOD": {"95": 0.9}, "ANSWER_BAD": {"80": 0.7, "60": 0.2}, "ANSWER_REFUSE": {"90": 0.9},
            "ANSWER_LOWMASS": {"90": 0.9}}


def judge_policy(body: dict) -> Verdicts:
    prompt = body["messages"][0]["content"]
    table = COHERENT if "coherence" in prompt else ALIGNED
    return Verdicts(table[answer_in(prompt)], "whole")


def scripted_subject(input, tools, tool_choice, config):
    output = ModelOutput.from_content("mockllm/model", ANSWERS[input[-1].text.split("] ", 1)[-1]])
    output.usage = ModelUsage(input_tokens=10, output_tokens=1, total_tokens=11)  # no tokenizer download
    return output

# A batch as large as the run's judge calls, sent after 0.3 s and polled every 0.1 s (Inspect's
# defaults, 15 s each, suit a real provider's hours-long jobs, not a test).
FAST_BATCH = {"size": 16, "send_delay": 0.3, "tick": 0.1}
JUDGE = "openai/gpt-4o-2024-08-06"  # OpenAI's provider: the one with a batch API (openai-api/ has none)


@pytest.fixture
def questions(tmp_path) -> str:
    path = tmp_path / "questions.yaml"
    path.write_text("\n".join(f"- id: {a.lower()}\n  paraphrases: ['{q}']\n  samples_per_paraphrase: 2"
                              for q, a in ANSWERS.items()) + "\n")
    return str(path)


def run(server, log_dir, **task_args):
    judge = get_model(JUDGE, base_url=server.base_url, api_key="test-key", memoize=False)
    [log] = inspect_eval(
        free_form(judge_cache=False, **task_args),
        model=get_model("mockllm/model", custom_outputs=scripted_subject),
        model_roles={"grader": judge},
        display="none",
        log_dir=str(log_dir),
    )
    return read_eval_log(log.location)


def test_a_batched_judge_gives_the_direct_judges_verdicts_with_log_probabilities(loopback, questions, tmp_path):
    direct_server = loopback(judge_policy)
    direct = run(direct_server, tmp_path / "direct", questions=questions)
    server = loopback(judge_policy)
    batched = run(server, tmp_path / "batched", questions=questions, judge_batch=FAST_BATCH)
    assert direct.status == batched.status == "success", (direct.error, batched.error)

    # every judge call went to the batch API: one job per full batch, none to chat completions
    assert "POST /v1/chat/completions" not in server.hits
    assert {"POST /v1/files", "POST /v1/batches"} <= set(server.hits)
    jobs = server.batches
    assert jobs and all(job["status"] == "completed" for job in jobs)
    assert sum(job["request_counts"]["completed"] for job in jobs) == len(server.requests) == 2 * 8
    assert all(r["logprobs"] is True and r["top_logprobs"] == 20 for r in server.requests)

    # the same verdicts, read from the same log-probabilities, sample by sample
    for one, other in zip(direct.samples, batched.samples, strict=True):
        a, b = one.scores["alignment_judge"], other.scores["alignment_judge"]
        assert (one.id, one.epoch) == (other.id, other.epoch)
        assert repr(a.value) == repr(b.value)  # NaN where undefined, in both
        assert b.metadata["judge"]["method"] == "logprob"
        assert b.metadata["judge"]["batch"] == FAST_BATCH and a.metadata["judge"]["batch"] is None
        assert a.metadata["verdicts"] == b.metadata["verdicts"]
    metrics = {name: m.value for s in batched.results.scores for name, m in s.metrics.items()}
    assert metrics == {name: m.value for s in direct.results.scores for name, m in s.metrics.items()}
    assert (metrics["n_answers"], metrics["n_misaligned"], metrics["n_refusal"], metrics["n_unscorable"]) == (8, 2, 2, 2)


def test_rejudge_with_batch_sends_the_new_judges_calls_as_batch_jobs(loopback, questions, tmp_path, monkeypatch):
    original = run(loopback(judge_policy), tmp_path / "logs", questions=questions)
    server = loopback(judge_policy)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    out = tmp_path / "rejudged.eval"
    result = CliRunner().invoke(app, ["rejudge", original.location, "--judge", JUDGE, "--out", str(out),
                                      "--batch", "{size: 16, send_delay: 0.3, tick: 0.1}"])
    assert result.exit_code == 0, result.output
    assert "POST /v1/chat/completions" not in server.hits
    assert sum(job["request_counts"]["completed"] for job in server.batches) == 2 * 8
    new = read_eval_log(str(out))
    scorer = "judge_openai_gpt_4o_2024_08_06"
    for sample in new.samples:  # the same verdicts as the original judge: same policy, same log-probabilities
        assert repr(sample.scores[scorer].value) == repr(sample.scores["alignment_judge"].value)
        assert sample.scores[scorer].metadata["judge"]["batch"] == FAST_BATCH


def test_a_request_the_batch_api_fails_is_a_sample_error_naming_the_judge(loopback, questions, tmp_path):
    def policy(body):
        prompt = body["messages"][0]["content"]
        return HTTPError(400) if "ANSWER_BAD" in prompt else judge_policy(body)

    server = loopback(policy)
    log = run(server, tmp_path / "logs", questions=questions, judge_batch=FAST_BATCH)
    assert log.status == "error"  # no headline from a run whose judge failed on some answers
    assert f"judge {JUDGE}" in log.error.message and "failed" in log.error.message
    assert {job["status"] for job in server.batches} == {"completed"}
    assert sum(job["request_counts"]["failed"] for job in server.batches) >= 1


@pytest.mark.parametrize("value, expected", [
    (False, None), (None, None), (True, {}), (50, {"size": 50}),
    ({"size": 500, "send_delay": 60}, {"size": 500, "send_delay": 60}),
])
def test_judge_batch_values(value, expected):
    batch = as_batch("judge_batch", value)
    assert (None if batch is None else batch.model_dump(exclude_none=True)) == expected


@pytest.mark.parametrize("value, problem", [
    ("on", "expected false, true, a batch size"), (0, "at least 1"), (-5, "at least 1"),
    ({"sned_delay": 60}, "unknown batch setting(s) sned_delay"), ({"tick": float("inf")}, "positive number"),
    ({"size": True}, "positive number"),
])
def test_a_bad_judge_batch_is_a_clear_error_before_any_sample_runs(value, problem, questions):
    with pytest.raises(ValueError, match="judge_batch") as raised:
        free_form(questions=questions, judge_batch=value)
    assert problem in str(raised.value)
