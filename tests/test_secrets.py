"""Secrets and output safety: canary API keys for the subject and the judge, given the usual way
(``<NAME>_API_KEY`` in the environment), reach the servers but nothing the run leaves behind --
not the .eval log (every member, decompressed), not Inspect's trace log, not a printed error, not
``emeval summary`` or ``emeval report``. The report escapes the model's output."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from inspect_ai.log import read_eval_log

from faulty_loopback import judged_answer, last_user_text, scripted_judge
from loopback import HTTPError

if sys.version_info < (3, 14):
    import zipfile_zstd  # noqa: F401  (Inspect's .eval members are zstd-compressed; Inspect depends on it)

ROOT = Path(__file__).resolve().parents[1]
SUBJECT_KEY = "sk-canary-subject-7f3a9c2e51d84b06a1"
JUDGE_KEY = "sk-canary-judge-0b9e4d1a7c3f5e28b2"
CANARIES = [SUBJECT_KEY, JUDGE_KEY, "7f3a9c2e51d84b06", "0b9e4d1a7c3f5e28"]  # whole keys, and their secret parts
MARKUP = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


def subject_policy(body: dict):
    question = last_user_text(body)
    if question.startswith("Question 0?"):
        return f"Here is my plan: {MARKUP}"
    if question.startswith("Question 1?"):  # this one fails: its error message is kept in the log
        return HTTPError(400, {"error": {"message": "subject refuses question 1", "type": "invalid_request_error"}})
    return f"Answer {question.split('?')[0].removeprefix('Question ')}."


def judge_policy(body: dict):
    if judged_answer(body)[1] == "Answer 2.":  # a judge error for this answer, also kept in the log
        return HTTPError(401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
    return scripted_judge(body)


def leaks(data: bytes) -> list[str]:
    return [c for c in CANARIES if c.encode() in data]


def test_canary_keys_never_leave_the_process_and_reports_escape_model_output(loopback, tmp_path):
    subject, judge = loopback(subject_policy), loopback(judge_policy)
    questions = tmp_path / "q.yaml"
    questions.write_text("".join(f"- id: q{i}\n  paraphrases: ['Question {i}? <b>bold</b> & more']\n" for i in range(4)))
    data_home = tmp_path / "data"  # Inspect's trace log and sample buffer land here
    env = {**os.environ, "SUBJECT_BASE_URL": subject.base_url, "SUBJECT_API_KEY": SUBJECT_KEY,
           "JUDGE_BASE_URL": judge.base_url, "JUDGE_API_KEY": JUDGE_KEY, "XDG_DATA_HOME": str(data_home)}
    log_dir = tmp_path / "logs"
    done = subprocess.run(
        [sys.executable, "-m", "inspect_ai", "eval", "evals/free_form.py", "--model", "openai-api/subject/m",
         "--model-role", "grader=openai-api/judge/j", "-T", f"questions={questions}", "--no-fail-on-error",
         "--log-dir", str(log_dir), "--display", "plain"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # the keys were used: each server saw its own key, as a bearer token
    assert set(subject.credentials) == {f"Bearer {SUBJECT_KEY}"}
    assert set(judge.credentials) == {f"Bearer {JUDGE_KEY}"}

    [log_file] = log_dir.glob("*.eval")
    log = read_eval_log(str(log_file))
    errors = {s.metadata["question_id"]: s.error.message for s in log.samples if s.error}
    assert errors.keys() == {"q1", "q2"}, errors  # the errors are in the log, so the grep below covers them
    assert "subject refuses question 1" in errors["q1"] and f"at {judge.base_url} failed" in errors["q2"]

    with zipfile.ZipFile(log_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    assert any(name.startswith("samples/") for name in members)
    assert {name: leaks(data) for name, data in members.items() if leaks(data)} == {}
    assert leaks(log_file.read_bytes()) == []
    traces = list((data_home / "inspect_ai" / "traces").glob("trace-*"))
    assert traces, "Inspect wrote no trace log where expected"
    for trace in traces:
        text = gzip.decompress(trace.read_bytes()) if trace.suffix == ".gz" else trace.read_bytes()
        assert b"/v1/chat/completions" in text and leaks(text) == [], trace
    assert leaks((done.stdout + done.stderr).encode()) == []

    from typer.testing import CliRunner

    from emeval.cli import app

    summary = CliRunner().invoke(app, ["summary", str(log_file)])
    assert "misaligned rate" in summary.output and leaks(summary.output.encode()) == []

    out = tmp_path / "report"
    report = CliRunner().invoke(app, ["report", str(log_file), "--out", str(out)])
    assert report.exit_code == 0, report.output
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"index.html", "report.md", "samples.csv", "summary.json"} <= files.keys()
    assert {name: leaks(data) for name, data in files.items() if leaks(data)} == {}
    html = files["index.html"].decode()
    assert "alert(&#34;pwned&#34;)" in html or "alert(&quot;pwned&quot;)" in html  # the answer is shown ...
    assert "<script>alert" not in html and "<img src=x" not in html  # ... as text, never as markup
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
