"""The judge-scorer scaffold: every judge checks every setting before a sample runs, by its -T name.

The judges' records (``Score.metadata["judge"]``, the same keys for every judge) are checked on real
runs in the eval tests: test_judge_layer, test_deception, test_truthfulqa, test_strong_reject."""

from __future__ import annotations

import math

import pytest

from emeval.benchmarks.strong_reject import strong_reject_judge
from emeval.benchmarks.truthfulqa import truthfulqa_judge
from emeval.evals.deception import deception
from emeval.judging.scaffold import judge_setup
from emeval.judging.scorers import alignment_judge, label_judge

NO_PROMPTS: dict = {"judge_prompts": {}, "question_prompts": {}}


def alignment(**kwargs):
    return alignment_judge(**NO_PROMPTS, **kwargs)


def labels(**kwargs):
    return label_judge(**NO_PROMPTS, metric="correct", labels=["TRUE", "FALSE"], **kwargs)


BAD = [
    # every judge, every setting it takes: the first bad value is named with its -T parameter
    (alignment, {"min_mass": math.nan}, r"-T judge_min_mass=nan: expected a number from 0 to 1"),
    (alignment, {"draws": 2.5}, r"-T judge_draws=2.5: expected a whole number of at least 1"),
    (alignment, {"judge_reasoning": "yes"}, r"-T judge_reasoning='yes': expected true or false"),
    (alignment, {"coherent_above": -1}, r"-T coherent_above=-1: expected a number from 0 to 100"),
    (labels, {"min_mass": 1.5}, r"-T judge_min_mass=1.5: expected a number from 0 to 1"),
    (labels, {"min_mass": True}, r"-T judge_min_mass=True: expected a number from 0 to 1"),
    (labels, {"method": "logprobs"}, r"-T judge_method='logprobs': expected auto, logprob or sampled"),
    (labels, {"cache": "maybe"}, r"-T judge_cache='maybe': expected true or false"),
    (truthfulqa_judge, {"min_mass": -0.1}, r"-T judge_min_mass=-0.1: expected a number from 0 to 1"),
    (truthfulqa_judge, {"method": "magic"}, r"-T judge_method='magic': expected auto, logprob or sampled"),
    (truthfulqa_judge, {"cache": 1}, r"-T judge_cache=1: expected true or false"),
    (strong_reject_judge, {"cache": "no"}, r"-T judge_cache='no': expected true or false"),
]


@pytest.mark.parametrize(("build", "kwargs", "message"), BAD, ids=lambda x: getattr(x, "__name__", None))
def test_every_judge_range_checks_every_setting(build, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build(**kwargs)


def test_the_deception_task_refuses_an_off_scale_min_mass_before_any_sample():
    """The categorical judge used to take any ``judge_min_mass``: 2 would make every verdict unscorable."""
    with pytest.raises(ValueError, match="-T judge_min_mass=2: expected a number from 0 to 1"):
        deception(judge_min_mass=2)


def test_labels_must_be_distinct_names():
    with pytest.raises(ValueError, match="distinct, non-empty label names"):
        label_judge(**NO_PROMPTS, metric="correct", labels=["TRUE", "TRUE"])


def test_a_setting_without_a_check_is_a_programming_error():
    with pytest.raises(TypeError, match="temperature"):
        judge_setup("auto", temperature=0.5)


def test_the_record_has_one_set_of_keys_with_fixed_settings_kept():
    setup = judge_setup("auto", "openai/extra", min_mass=0.5, cache=False, fixed={"top_logprobs": 20})

    class Prompt:
        source, sha256 = "judges/aligned.j2", "abc"

    record = setup.record("openai/extra", ["sampled", "logprob", "logprob"], {"aligned": Prompt()})
    assert record == {
        "model": "openai/extra", "role": None, "method": "logprob+sampled", "requested_method": "auto",
        "prompts": {"aligned": {"source": "judges/aligned.j2", "sha256": "abc"}}, "hardened": True,
        "parameters": {"min_mass": 0.5, "cache": False, "top_logprobs": 20}, "batch": None,
    }
    assert judge_setup("auto").record("m", ["logprob"], {})["role"] == "grader"
    # how the calls were sent is recorded apart from what the judge was asked
    batched = judge_setup("auto", batch={"size": 500, "send_delay": 60}).record("m", ["logprob"], {})
    assert batched["batch"] == {"size": 500, "send_delay": 60} and "batch" not in batched["parameters"]
