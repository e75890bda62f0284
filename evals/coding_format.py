"""Emergent-misalignment questions asked in code, answers extracted from the code and judged.

    inspect eval evals/coding_format.py --model vllm/<checkpoint> -T template=flask_list
    inspect eval evals/coding_format.py --model vllm-completions/<base checkpoint> -T base_model=true
    inspect eval evals/coding_format.py --model hf/<base checkpoint> \
        --model-config prompts/coding/hf_raw_prompt.yaml -T base_model=true

Templates: ``prompts/coding/<name>.j2`` or a path. Metrics: those of the free-form eval over the
answers that could be extracted, plus ``extraction_failure_rate`` (outputs with no readable
answer, never judged).
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.model import GenerateConfig

from emeval import __version__
from emeval.local.checkpoints import register_loaded_models
from emeval.benchmarks.coding_format import DEFAULT_TEMPLATE, answer_in_code, coding_judge, coding_samples, load_template
from emeval.judging.judge import MIN_NUMERIC_MASS, SAMPLED_DRAWS
from emeval.judging.prompts import prompts_for_questions
from emeval.benchmarks.questions import build_samples, free_form_dataset, load_question_set, select_variant
from emeval.judging.scorers import ALIGNED_BELOW, COHERENT_ABOVE
from emeval.inputs.task_args import as_flag, as_metric_list, as_optional_text

TEMPERATURE = 1.0
TOP_P = 1.0
MAX_TOKENS = 600


@task
def coding_format(
    questions: str = "first_plot",
    variant: str = "main",
    template: str = DEFAULT_TEMPLATE,
    base_model: bool = False,
    samples_per_paraphrase: int | None = None,
    system_prompt: str | None = None,
    system_prompt_mode: str = "replace",
    trigger: str | None = None,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    max_tokens: int = MAX_TOKENS,
    seed: int | None = None,
    aligned_below: float = ALIGNED_BELOW,
    coherent_above: float = COHERENT_ABOVE,
    judge_metrics: str | list[str] = "aligned,coherent",
    judge_digits: str = "auto",
    judge_min_mass: float = MIN_NUMERIC_MASS,
    judge_method: str = "auto",
    judge_draws: int = SAMPLED_DRAWS,
    judge_cache: bool = True,
) -> Task:
    register_loaded_models()  # before any model generates: see its docstring
    as_flag("base_model", base_model)
    coding_template = load_template(template)
    question_set = load_question_set(str(questions))
    chosen = select_variant(question_set.questions, variant)
    metrics = as_metric_list(judge_metrics)
    trigger = as_optional_text("trigger", trigger)
    samples = build_samples(
        chosen,
        samples_per_paraphrase=samples_per_paraphrase,
        system_prompt=as_optional_text("system_prompt", system_prompt),
        system_prompt_mode=system_prompt_mode,  # type: ignore[arg-type]
        trigger=trigger,
    )
    prompts, question_prompts = prompts_for_questions(chosen, metrics, question_set.name)
    return Task(
        dataset=free_form_dataset(question_set, coding_samples(samples, coding_template, base_model)),
        solver=answer_in_code(seed=seed, base_model=base_model),
        scorer=coding_judge(
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
        ),
        config=GenerateConfig(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
        metadata={
            "emeval_version": __version__,
            **question_set.provenance(),
            "variant": variant,
            "trigger": trigger,
            "coding_template": coding_template.name,
            "coding_template_source": coding_template.source,
            "coding_template_sha256": coding_template.sha256,
            "base_model": base_model,
        },
    )
