"""Task assembly shared by the eval files: each ``evals/<name>.py`` names its parameters, this builds the rest.

``eval_task`` adds what every emeval task has (in-process models registered, ``emeval_version`` first
in the metadata). ``question_samples`` asks a question file the way every question eval asks it.
``alignment_judge_options`` turns the alignment judge's ``-T`` parameters, which free_form and
coding_format share under the same names, into its scorers' keyword arguments: written once, here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inspect_ai import Task
from inspect_ai.dataset import Dataset, MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Scorer
from inspect_ai.solver import Solver

from emeval import __version__
from emeval.benchmarks.questions import Question, QuestionSet, build_samples, free_form_dataset, load_question_set, select_variant
from emeval.inputs.task_args import as_metric_list, as_optional_text
from emeval.judging.prompts import prompts_for_questions
from emeval.local.checkpoints import register_loaded_models

JUDGE_PARAMETERS = {
    "aligned_below": "aligned_below",
    "coherent_above": "coherent_above",
    "judge_digits": "digits",
    "judge_min_mass": "min_mass",
    "judge_method": "method",
    "judge_draws": "draws",
    "judge_cache": "cache",
    "judge_batch": "batch",
}
"""The alignment judge's ``-T`` parameters (besides ``judge_metrics``) -> its scorers' keyword arguments."""


def eval_task(
    dataset: Dataset,
    solver: Solver,
    scorer: Scorer | list[Scorer],
    *,
    metadata: Mapping[str, Any],
    config: GenerateConfig | None = None,
) -> Task:
    """The task, with ``emeval_version`` first in its metadata (reports group and compare runs by it).

    In-process (``hf/``) models are registered here (``register_loaded_models``): Inspect has built
    them before it calls a task function, and none has generated yet.
    """
    register_loaded_models()
    return Task(
        dataset=dataset,
        solver=solver,
        scorer=scorer,
        config=config if config is not None else GenerateConfig(),
        metadata={"emeval_version": __version__, **metadata},
    )


@dataclass(frozen=True)
class AskedQuestions:
    """The questions chosen from a question file and their samples (question x paraphrase x repeat)."""

    question_set: QuestionSet
    questions: list[Question]
    samples: list[Sample]
    variant: str | None
    trigger: str | None

    def dataset(self, samples: Sequence[Sample] | None = None) -> MemoryDataset:
        """These samples (or the same samples re-worded) as a dataset named after the question file."""
        return free_form_dataset(self.question_set, list(self.samples if samples is None else samples))

    def metadata(self) -> dict[str, Any]:
        """The question file's provenance, the variant asked (when one was chosen) and the trigger."""
        variant = {} if self.variant is None else {"variant": self.variant}
        return {**self.question_set.provenance(), **variant, "trigger": self.trigger}


def question_samples(
    questions: str,
    variant: str | None = None,
    samples_per_paraphrase: int | None = None,
    system_prompt: str | None = None,
    system_prompt_mode: str = "replace",
    trigger: str | None = None,
) -> AskedQuestions:
    """A question file (a shipped set's name or a path) asked as the task parameters say; ``variant=None``
    asks every question and records no variant."""
    question_set = load_question_set(str(questions))
    chosen = question_set.questions if variant is None else select_variant(question_set.questions, variant)
    trigger = as_optional_text("trigger", trigger)
    samples = build_samples(
        chosen,
        samples_per_paraphrase=samples_per_paraphrase,
        system_prompt=as_optional_text("system_prompt", system_prompt),
        system_prompt_mode=system_prompt_mode,  # type: ignore[arg-type]
        trigger=trigger,
    )
    return AskedQuestions(question_set, chosen, samples, variant, trigger)


def alignment_judge_options(task_args: Mapping[str, Any], asked: AskedQuestions) -> dict[str, Any]:
    """The keyword arguments of the alignment judge's scorers (``judge_scorers``, ``coding_judge``).

    ``task_args`` is the task function's arguments (``locals()``), read by their ``-T`` names
    (``judge_metrics`` and ``JUDGE_PARAMETERS``); the judge prompts are those of the chosen questions.
    The scorers range-check every value.
    """
    metrics = as_metric_list(task_args["judge_metrics"])
    prompts, question_prompts = prompts_for_questions(asked.questions, metrics, asked.question_set.name)
    return {
        "judge_prompts": prompts,
        "question_prompts": question_prompts,
        "metrics": metrics,
        **{keyword: task_args[name] for name, keyword in JUDGE_PARAMETERS.items()},
    }
