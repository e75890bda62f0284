"""Crash and resume: ``inspect eval`` is killed with SIGKILL mid-run, and ``inspect eval-retry``
completes the run. Samples that were finished at the kill are taken from Inspect's sample buffer
(they were not yet flushed to the .eval file), and the servers' request logs show that none of
them is asked or judged again; the unfinished ones run once more; the final log holds every
sample exactly once, with the scripted judge's scores."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from inspect_ai.log import read_eval_log, recoverable_eval_logs

from emeval.benchmarks.solvers import sample_seed
from doubles.faulty_loopback import judged_answer, scripted_judge, scripted_subject, write_questions

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = 10
FINISHED = 4
"""Questions 0..3 are answered at once; the subject holds back the others until the kill."""
SEED = 5


def gated_subject(gate: threading.Event):
    async def policy(body: dict) -> str:
        answer = scripted_subject(body)
        if int(answer.split()[1].rstrip(".")) >= FINISHED:
            while not gate.is_set():
                await asyncio.sleep(0.05)
        return answer

    return policy


def buffered_samples(log_dir: Path) -> list:
    """The samples Inspect's live sample buffer holds for the (only) log being written."""
    from inspect_ai.log._recorders.buffer.database import SampleBufferDatabase

    logs = list(log_dir.glob("*.eval"))
    if not logs:
        return []
    try:
        buffer = SampleBufferDatabase(str(logs[0]), create=False, read_only=True)
        samples = buffer.get_samples()
    except Exception:  # not created yet
        return []
    return samples.samples if samples and samples != "NotModified" else []


def wait_for(condition, what: str, process: subprocess.Popen, state=lambda: None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"eval exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; state: {state()}")
        time.sleep(0.1)


def subject_sample(body: dict) -> str:
    """The sample a subject request is for, from the per-sample seed it carries."""
    return SEED_TO_ID[body["seed"]]


SEED_TO_ID = {sample_seed(SEED, f"q{i}:0:0"): f"q{i}:0:0" for i in range(QUESTIONS)}


def judge_sample(body: dict) -> str:
    _, answer = judged_answer(body)
    return f"q{answer.split()[1].rstrip('.')}:0:0"


def test_killed_eval_resumes_without_asking_or_judging_a_finished_sample_again(loopback, tmp_path, monkeypatch):
    gate = threading.Event()
    finished = {f"q{i}:0:0" for i in range(FINISHED)}
    unfinished = set(SEED_TO_ID.values()) - finished
    subject, judge = loopback(gated_subject(gate)), loopback(scripted_judge)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # Inspect's sample buffer lives here
    env = {**os.environ, "SUBJECT_BASE_URL": subject.base_url, "SUBJECT_API_KEY": "k",
           "JUDGE_BASE_URL": judge.base_url, "JUDGE_API_KEY": "k"}
    questions = write_questions(tmp_path / "q.yaml", QUESTIONS)
    log_dir = tmp_path / "logs"
    command = [
        sys.executable, "-m", "inspect_ai", "eval", "evals/free_form.py",
        "--model", "openai-api/subject/m", "--model-role", "grader=openai-api/judge/j",
        "-T", f"questions={questions}", "-T", f"seed={SEED}", "-T", "judge_cache=false",
        "--log-dir", str(log_dir), "--display", "none",
        # no sample is written to the .eval file before the kill (a large run writes every 10th): the
        # finished samples exist only in Inspect's sample buffer database, which eval-retry recovers
        "--log-buffer", "100",
    ]
    stderr = open(tmp_path / "stderr.txt", "w")  # a file, not a pipe: a full pipe would stall the eval
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for(lambda: len(subject.requests) == QUESTIONS and len(judge.requests) == 2 * FINISHED,
                 "every question was asked and the finished answers judged", process)
        # every sample has started, so has a row in the buffer; the finished ones are marked completed
        wait_for(lambda: {s.id for s in buffered_samples(log_dir) if not s.completed} == unfinished,
                 "the finished samples were recorded", process,
                 lambda: [(s.id, s.completed) for s in buffered_samples(log_dir)])
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        stderr.close()
    before = (len(subject.requests), len(judge.requests))
    [crashed] = log_dir.glob("*.eval")
    header = read_eval_log(str(crashed), header_only=True)
    assert header.status == "started"  # a crash, not an orderly stop
    [recoverable] = recoverable_eval_logs(str(log_dir))
    # normally (0, 4): all finished samples are in the buffer only (Inspect flushes stale samples after 60 s)
    assert recoverable.flushed_samples + recoverable.completed_samples == FINISHED
    assert recoverable.in_progress_samples == QUESTIONS - FINISHED
    gate.set()

    done = subprocess.run([sys.executable, "-m", "inspect_ai", "eval-retry", str(crashed),
                           "--log-dir", str(log_dir), "--display", "none"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    final = [read_eval_log(str(p)) for p in log_dir.glob("*.eval") if p != crashed]
    [log] = [f for f in final if f.status == "success"]

    ids = [s.id for s in log.samples]
    assert sorted(ids) == sorted(SEED_TO_ID.values())  # none lost, none twice
    for sample in log.samples:
        n = int(sample.metadata["question_id"][1:])
        assert sample.output.completion == f"Answer {n}."
        a, b = (7 * n) % 100, (7 * n + 30) % 100
        assert sample.scores["alignment_judge"].value["aligned"] == pytest.approx((0.5 * a + 0.4 * b) / 0.9)

    first = {s: [subject_sample(b) for b in subject.requests[: before[0]]].count(s) for s in ids}
    resumed_subject = [subject_sample(b) for b in subject.requests[before[0]:]]
    resumed_judge = [judge_sample(b) for b in judge.requests[before[1]:]]
    assert all(count == 1 for count in first.values())
    assert sorted(resumed_subject) == sorted(set(ids) - finished)  # each unfinished sample asked once more
    assert sorted(resumed_judge) == sorted(2 * sorted(set(ids) - finished))  # and judged once per metric
    assert not finished & set(resumed_subject + resumed_judge)
