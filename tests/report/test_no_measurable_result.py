"""No meaningless result without a flag: when a headline rests on n = 0 (here: every answer unscorable),
``emeval summary``, ``report`` and ``compare`` say which eval, group and metric, and exit 4.

Two real runs of ``evals/free_form.py`` (by path) over loopback models: the subject answers; one
judge gives numbers, the other only words (every answer unscorable).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from inspect_ai import eval as inspect_eval
from typer.testing import CliRunner

from emeval.cli.app import app
from emeval.report.measurable import NO_MEASURABLE_RESULT
from doubles.loopback import LoopbackServer, Verdicts, message_text

ROOT = Path(__file__).resolve().parents[2]


def policy(body: dict):
    text = message_text(body["messages"][0])
    if "[ANSWER START]" not in text:
        return "A careful answer."
    if body["model"] == "judge-words":
        return Verdicts({"fine": 0.9})  # no number at all: unscorable
    return Verdicts({"80": 0.95} if "coheren" in text else {"20": 0.95})  # coherent and misaligned


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unmeasured")
    questions = tmp / "questions.yaml"
    questions.write_text("- id: q1\n  paraphrases: ['Question one?']\n- id: q2\n  paraphrases: ['Question two?']\n")
    server = LoopbackServer(policy).start()
    logs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        mp.setenv("LOOP_API_KEY", "test-key")
        mp.setenv("LOOP_BASE_URL", server.base_url)
        mp.chdir(ROOT)  # task files are named relative to the repo root, as with `inspect eval`
        for name, judge in (("scored", "openai-api/loop/judge-numbers"), ("unscorable", "openai-api/loop/judge-words")):
            log = inspect_eval(
                "evals/free_form.py",
                task_args={"questions": str(questions), "samples_per_paraphrase": 2, "seed": 0},
                model="openai-api/loop/subject",
                model_roles={"grader": judge},
                display="none",
                log_dir=str(tmp / name),
            )[0]
            assert log.status == "success", log.error
            logs[name] = Path(log.location)
    server.stop()
    return SimpleNamespace(tmp=tmp, **logs)


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())


def test_summary_of_an_all_unscorable_run_warns_and_exits_4(runs):
    result, text = invoke("summary", runs.unscorable)
    assert result.exit_code == NO_MEASURABLE_RESULT == 4, result.output
    assert "No measurable result (exit 4)" in text
    assert re.search(r"free.form — openai-api/loop/subject: alignment_judge misaligned rate rests on n = 0 "
                     r"\(4 answer\(s\): 0 judged, 0 coherent, 4 unscorable", text), text
    result, text = invoke("summary", runs.scored)
    assert result.exit_code == 0, result.output
    assert "No measurable" not in text


def test_report_names_the_group_whose_headline_rests_on_n_0_and_still_writes_it(runs):
    out = runs.tmp / "report"
    result, text = invoke("report", runs.scored, runs.unscorable, "--group", "scored=*/scored/*",
                          "--group", "unscorable=*/unscorable/*", "--out", out)
    assert result.exit_code == 4, result.output
    assert "free_form / unscorable: alignment_judge misaligned rate rests on n = 0 (4 answer(s): 4 unscorable)" in text
    assert "free_form / scored" not in text
    assert {"index.html", "report.md", "samples.csv", "summary.json"} <= {p.name for p in out.iterdir()}
    result, text = invoke("report", runs.scored, "--out", runs.tmp / "report-ok")
    assert result.exit_code == 0, result.output


def test_compare_with_a_side_that_has_no_headline_exits_4(runs):
    result, text = invoke("compare", runs.scored, runs.unscorable)
    assert result.exit_code == 4, result.output
    assert f"free_form: alignment_judge misaligned rate rests on n = 0 on B = {runs.unscorable}" in text
    result, text = invoke("compare", runs.scored, runs.scored)
    assert result.exit_code == 0, result.output


def test_a_judge_only_one_side_holds_is_not_flagged_on_the_other():
    """compare of a run and its re-judged copy: the copy's extra judge has no A side, which is no n = 0
    headline; a scorer a side holds whose headline is empty there is, and so is a side with no headline."""
    import pandas as pd

    from emeval.report.measurable import unmeasured_comparisons

    def rows(*cells):
        return pd.DataFrame([dict(eval="free_form", scorer=s, metric=m, question_id="", n_a=a, n_b=b)
                             for s, m, a, b in cells])

    extra_judge = rows(("alignment_judge", "misaligned", 6, 6), ("judge_x", "misaligned", 0, 6))
    assert unmeasured_comparisons(extra_judge, "run", "copy") == []
    empty_b = rows(("alignment_judge", "is_unscorable", 8, 8), ("alignment_judge", "misaligned", 6, 0))
    assert unmeasured_comparisons(empty_b, "run", "other") == [
        "free_form: alignment_judge misaligned rate rests on n = 0 on B = other"]
    assert unmeasured_comparisons(rows(("alignment_judge", "misaligned", 6, 0)), "run", "other") == [
        "free_form: no headline has a value on B = other"]
