"""The shared task builder and what the thin eval files state at their top: the pinned revisions they
name agree with the pins that are fetched (``emeval.inputs.data``), and the alignment judge's parameters,
read by name from the task's arguments, are parameters of both tasks that share them."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

from emeval.benchmarks.task_builder import JUDGE_PARAMETERS, question_samples
from emeval.benchmarks.truthfulqa import REVISIONS
from emeval.inputs.data import FILES

EVALS = Path(__file__).resolve().parents[2] / "evals"


def eval_file(name: str):
    """The task file loaded by path, as ``inspect eval evals/<name>.py`` loads it."""
    spec = importlib.util.spec_from_file_location(f"thin_{name}", EVALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "constant", "pinned"),
    [
        ("free_form", "QUESTIONS_REVISION", "emergent-misalignment/first_plot_questions.yaml"),
        ("coding_format", "QUESTIONS_REVISION", "emergent-misalignment/first_plot_questions.yaml"),
        ("deception", "QUESTIONS_REVISION", "emergent-misalignment/deception_factual.yaml"),
        ("deception", "QUESTIONS_REVISION", "emergent-misalignment/deception_sit_aware.yaml"),
        ("logprob_probes", "PROBES_REVISION",
         "emergent-misalignment/logprob_experiments/configs/insecure_ftjob-39c69c88ad2a.json"),
    ],
)
def test_revision_named_in_the_task_file_is_the_one_fetched(name: str, constant: str, pinned: str) -> None:
    assert getattr(eval_file(name), constant) == FILES[pinned].revision


def test_truthfulqa_names_the_pinned_revision_of_every_mode() -> None:
    module = eval_file("truthfulqa")
    assert module.DATA_REVISIONS == {name: revision.mc.revision for name, revision in REVISIONS.items()}
    assert module.REVISION in REVISIONS


@pytest.mark.parametrize("name", ["free_form", "coding_format"])
def test_alignment_judge_parameters_are_task_parameters(name: str) -> None:
    """The builder reads these by their -T names: a renamed task parameter must fail here, not at run time."""
    parameters = inspect.signature(getattr(eval_file(name), name)).parameters
    assert {"judge_metrics", *JUDGE_PARAMETERS} <= set(parameters)


def test_question_samples_records_the_asked_variant_and_normalised_trigger() -> None:
    asked = question_samples("demo", "main", samples_per_paraphrase=2, trigger="")
    assert asked.metadata()["variant"] == "main" and asked.metadata()["trigger"] is None
    assert len(asked.samples) == 2 * sum(len(q.paraphrases) for q in asked.questions)
    every = question_samples("demo", None, samples_per_paraphrase=1)
    assert "variant" not in every.metadata() and every.questions == every.question_set.questions
