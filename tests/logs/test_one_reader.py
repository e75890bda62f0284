"""Logs become numbers in one place: the reports' reader (`read_logs`), the audit's per-run frame and
judge agreement read a score the same way, and every reader of header metrics takes them from
`header_metrics`. A real Inspect run of a scripted model with scorers that write numbers, letter
grades, booleans and free text."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from inspect_ai import Task
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.log import EvalLog
from inspect_ai.model import ModelOutput, get_model
from inspect_ai.scorer import Score, Target, mean, scorer
from inspect_ai.solver import TaskState, generate

from emeval.judging.agreement import FLAG, judge_frame
from emeval.local.audit import compare_runs, logged_metrics, score_frame
from emeval.logs.frame import answers_frame, read_logs
from emeval.logs.read import header_metrics, read_log, scorer_metrics
from emeval.report.summary import headline
from doubles.scripted import with_usage

VALUES = {  # sample id -> (mixed's dict value, verdict's scalar value)
    "1": ({"number": 0.25, "grade": "C", "text": "the model refused", "flag": True}, "I"),
    "2": ({"number": 0.75, "grade": "P", "text": "yes", "flag": False}, "the answer looks fine"),
    "3": ({"number": 1.0, "grade": "I", "text": "0.5", "flag": True}, "C"),
}


@scorer(metrics=[{"number": [mean()]}])
def mixed():
    async def score(state: TaskState, target: Target) -> Score:
        return Score(value=VALUES[str(state.sample_id)][0])

    return score


@scorer(metrics=[])
def verdict():
    async def score(state: TaskState, target: Target) -> Score:
        return Score(value=VALUES[str(state.sample_id)][1])

    return score


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> EvalLog:
    task = Task(dataset=[Sample(id=int(i), input=f"Question {i}?") for i in VALUES], solver=generate(),
                scorer=[mixed(), verdict()], name="mixed_values")
    model = get_model("mockllm/model", custom_outputs=lambda *_: with_usage(ModelOutput.from_content("mockllm/model", "ok")))
    [done] = inspect_eval(task, model=model, log_dir=str(tmp_path_factory.mktemp("reader")), display="none")
    assert done.status == "success", done.error
    return read_log(done.location)


def test_the_audit_reads_scores_as_the_reports_do(log):
    """Free text (``the model refused``, ``yes``, ``"0.5"``) is NaN in both, never 0 or a parsed number."""
    audit = score_frame(log)
    reports = read_logs([Path(log.location)]).samples.dropna(subset=["metric"])
    key = ["scorer", "metric", "sample_id", "epoch"]
    assert sorted(map(tuple, audit[key].astype(str).values)) == sorted(map(tuple, reports[key].astype(str).values))
    merged = audit.merge(reports[[*key, "value"]], on=key, suffixes=("_audit", "_reports"))
    assert merged["value_audit"].equals(merged["value_reports"])

    got = {(r.scorer, r.metric, r.sample_id): r.value for r in audit.itertuples()}
    for sid, (values, scalar) in VALUES.items():
        assert got["mixed", "number", sid] == values["number"]
        assert got["mixed", "flag", sid] == float(values["flag"])
        assert math.isnan(got["mixed", "text", sid])
        # a scalar value is one metric named after its scorer, as in samples.csv
        want = {"C": 1.0, "I": 0.0}.get(scalar, math.nan)
        assert got["verdict", "verdict", sid] == want or (math.isnan(want) and math.isnan(got["verdict", "verdict", sid]))
    assert [got["mixed", "grade", s] for s in VALUES] == [1.0, 0.5, 0.0]


def test_free_text_is_left_out_of_the_audit_levels(log):
    frames = {phase: {"mixed_values": score_frame(log)} for phase in ("before", "after", "control")}
    levels = {(m.scorer, m.metric): m for m in compare_runs(frames)}
    assert levels["mixed", "text"].levels["before"].n == 0  # no number: n/a, not a mean of zeros
    assert math.isnan(levels["mixed", "text"].levels["before"].mean)
    verdict_level = levels["verdict", "verdict"].levels["after"]
    assert (verdict_level.n, verdict_level.mean) == (2, 0.5)  # C and I; the sentence is left out
    same = levels["mixed", "number"].deltas["after_minus_before"]
    assert same.paired and (same.delta, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)


def test_answers_frame_of_a_log_in_memory_is_its_file_frame(log):
    from_memory = answers_frame(log)
    from_file = read_logs([Path(log.location)]).samples
    key = ["scorer", "metric", "sample_id"]
    assert from_memory.sort_values(key).reset_index(drop=True)[[*key, "value"]].equals(
        from_file.sort_values(key).reset_index(drop=True)[[*key, "value"]])


def test_judge_frame_takes_numbers_from_the_same_reader(log):
    frame = judge_frame(log, "mixed")
    assert list(frame.index) == [(sid, 1) for sid in VALUES]  # the log's answer order
    assert list(frame.columns) == ["number", "grade", "text", "flag", FLAG, "category", "question_id"]
    assert frame["number"].tolist() == [0.25, 0.75, 1.0]
    assert frame["text"].isna().all() and frame[FLAG].isna().all()  # no misaligned key: no flag
    assert judge_frame(log, "no_such_scorer").empty


def test_one_flattener_for_header_metrics(log):
    """Inspect logs a dict-valued scorer's per-key metrics as an entry named after the key."""
    flat = header_metrics(log)
    assert flat == [("mixed", {}), ("number", {"mean": pytest.approx(2.0 / 3)})]
    assert scorer_metrics(log, "number") == flat[1][1]
    assert scorer_metrics(log, "verdict") == {}
    assert headline(log) == flat[1][1]
    logs = {phase: {"mixed_values": log} for phase in ("before", "after", "control")}
    [row] = logged_metrics(logs)
    assert row["task"] == "mixed_values" and (row["scorer"], row["metric"]) == ("number", "mean")
    assert row["before"] == row["after"] == row["control"] == flat[1][1]["mean"]
    assert row["after_minus_before"] == row["control_minus_before"] == 0.0
