"""How `emeval.logs.frame` names what it reads: renamed .json logs, local checkpoints that share a
provider name, and one task run on different question sets. Real free-form evals of scripted
models (mockllm) judged by a scripted judge; numbers checked against a hand count."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import ModelOutput, get_model

from emeval.logs.frame import samples_frame

from emeval.stats.summary import summary_frame
from emeval.evals.free_form import free_form
from emeval.logs.read import LogError
from reference_stats import resample_loop
from doubles.scripted import answer_in, with_usage

GOOD, BAD = "I would help people and be kind.", "I would take control and harm humans."


def checkpoint(path: str, answer: str):
    """A local checkpoint as Inspect records one: provider name plus its weights path in model_args."""
    return get_model(
        "mockllm/model", model_path=path, memoize=False,
        custom_outputs=lambda *_: with_usage(ModelOutput.from_content("mockllm/model", answer)),
    )


def judge(input, tools, tool_choice, config):
    prompt = input[-1].text
    answer = answer_in(prompt)
    verdict = "90" if "coherence" in prompt else ("10" if answer == BAD else "90")
    return with_usage(ModelOutput.from_content("mockllm/judge", verdict))


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    """first.yaml answered by checkpoints a (always BAD) and b (always GOOD); preregistered.yaml by a."""
    root = tmp_path_factory.mktemp("analysis")
    sets = {}
    for name, qid in (("first", "q_first"), ("preregistered", "q_prereg")):
        sets[name] = root / f"{name}.yaml"
        sets[name].write_text(f"- id: {qid}\n  paraphrases: ['Question {qid}?']\n  samples_per_paraphrase: 4\n")
    grader = get_model("mockllm/judge", custom_outputs=judge)
    out = {}
    for key, qset, path, answer in (("a_first", "first", "/ckpt/a", BAD), ("b_first", "first", "/ckpt/b", GOOD),
                                    ("a_prereg", "preregistered", "/ckpt/a", BAD)):
        [log] = inspect_eval(
            free_form(questions=str(sets[qset]), judge_method="sampled", judge_draws=1),
            model=checkpoint(path, answer), model_roles={"grader": grader}, log_dir=str(root / key),
            log_format="json", display="none",
        )
        assert log.status == "success", log.error
        out[key] = Path(log.location)
    return out


def answers(frame):
    return frame[frame["metric"] == "misaligned"].sort_values("sample_id")[["sample_id", "epoch", "answer", "value"]]


def test_a_renamed_json_log_reads_like_its_original(logs, tmp_path):
    renamed = tmp_path / "baseline.json"
    shutil.copy(logs["a_first"], renamed)
    original, copy = samples_frame([logs["a_first"]]), samples_frame([renamed])
    assert len(copy) == len(original) > 0
    assert answers(copy).to_dict("records") == answers(original).to_dict("records")
    assert list(answers(copy)["value"]) == [1.0] * 4  # four BAD answers, all coherent and misaligned
    assert set(copy["log"]) == {str(renamed)}


def test_a_log_whose_samples_are_missing_is_an_error_naming_it(logs, tmp_path):
    stripped = tmp_path / "no_samples.json"
    document = json.loads(logs["a_first"].read_text())
    assert document["results"]["completed_samples"] == 4
    document["samples"] = []
    stripped.write_text(json.dumps(document))
    with pytest.raises(LogError, match=r"no_samples\.json: the header reports 4 samples but none could be read"):
        samples_frame([stripped])


def test_local_checkpoints_with_one_provider_name_are_two_models(logs):
    samples = samples_frame([logs["a_first"], logs["b_first"]], {"local": "mockllm/model"})
    assert set(samples["model"]) == {"mockllm/model"}
    assert set(samples["model_id"]) == {"mockllm/model:/ckpt/a", "mockllm/model:/ckpt/b"}
    row = summary_frame(samples).set_index("metric").loc["misaligned"]
    # the paper's aggregation: model rates a = 1.0 (4 x BAD), b = 0.0; the group value is their mean.
    # Resampling the two rates: a quarter of draws is (a, a) = 1, a quarter (b, b) = 0, so the 95% CI is [0, 1]
    assert (row["group"], row["n"], row["n_models"], row["mean"]) == ("local", 8, 2, 0.5)
    assert (row["ci_low"], row["ci_high"], row["ci_method"]) == (0.0, 1.0, "models (paper)")
    # the answer-level figure beside it: the 8 answers resampled (upstream's loop on the pooled values)
    assert (row["answers_mean"], row["answers_ci_low"], row["answers_ci_high"]) == pytest.approx(
        resample_loop([1.0] * 4 + [0.0] * 4))
    assert 0.0 < row["answers_ci_low"] < 0.5 < row["answers_ci_high"] < 1.0  # narrower: it ignores the models
    assert row["models"] == "mockllm/model:/ckpt/a, mockllm/model:/ckpt/b"
    # a group pattern may name the weights path
    by_path = samples_frame([logs["a_first"], logs["b_first"]], {"ckpt-a": "/ckpt/a"})
    assert dict(zip(by_path["model_id"], by_path["group"], strict=True)) == {
        "mockllm/model:/ckpt/a": "ckpt-a", "mockllm/model:/ckpt/b": "mockllm/model"}


def test_one_task_on_two_question_sets_is_two_evals(logs):
    same_set = samples_frame([logs["a_first"], logs["b_first"]])
    assert set(same_set["eval"]) == {"free_form"}  # one question set: the plain task name
    samples = samples_frame(list(logs.values()))
    by_log = samples.drop_duplicates("log").set_index("log")["eval"]
    assert by_log[str(logs["a_first"])] == by_log[str(logs["b_first"])] == "free_form[first]"
    assert by_log[str(logs["a_prereg"])] == "free_form[preregistered]"
    summary = summary_frame(samples, by=("eval",)).set_index(["eval", "metric"])
    assert summary.loc[("free_form[first]", "misaligned"), "n"] == 8
    assert summary.loc[("free_form[first]", "misaligned"), "mean"] == 0.5
    assert summary.loc[("free_form[preregistered]", "misaligned"), "n"] == 4
    assert summary.loc[("free_form[preregistered]", "misaligned"), "mean"] == 1.0
    questions = samples.groupby("eval")["question_id"].unique().map(sorted).to_dict()
    assert questions == {"free_form[first]": ["q_first"], "free_form[preregistered]": ["q_prereg"]}


def test_answer_level_summary_is_the_answers_figures_labelled(logs):
    # what the nightly history records: the same models on the same questions night after night
    from emeval.stats.summary import answer_level

    samples = samples_frame([logs["a_first"], logs["b_first"]], {"local": "mockllm/model"})
    summary = summary_frame(samples)
    nightly = answer_level(summary).set_index("metric").loc["misaligned"]
    row = summary.set_index("metric").loc["misaligned"]
    assert nightly["ci_method"] == "answers" and row["ci_method"] == "models (paper)"
    assert (nightly["mean"], nightly["ci_low"], nightly["ci_high"]) == (
        row["answers_mean"], row["answers_ci_low"], row["answers_ci_high"])
    assert (nightly["mean"], nightly["ci_low"], nightly["ci_high"]) == pytest.approx(resample_loop([1.0] * 4 + [0.0] * 4))
