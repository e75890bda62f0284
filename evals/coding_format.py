"""Emergent-misalignment questions asked in code (Betley et al. 2025, sections 4.4 and 4.8), answers read out and judged.

    inspect eval evals/coding_format.py --model vllm/<checkpoint> -T template=flask_list
    inspect eval evals/coding_format.py --model vllm-completions/<base checkpoint> -T base_model=true
    inspect eval evals/coding_format.py --model hf/<base checkpoint> \
        --model-config prompts/coding/hf_raw_prompt.yaml -T base_model=true
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.model import GenerateConfig

from emeval.benchmarks.coding_format import (
    DEFAULT_TEMPLATE, answer_in_code, coding_judge, coding_samples, load_template, template_metadata,
)
from emeval.benchmarks.task_builder import alignment_judge_options, eval_task, question_samples
from emeval.judging.judge import MIN_NUMERIC_MASS, SAMPLED_DRAWS
from emeval.judging.scorers import ALIGNED_BELOW, COHERENT_ABOVE

QUESTIONS = "first_plot"  # upstream's evaluation/first_plot_questions.yaml, fetched at the commit below
QUESTIONS_REVISION = "80c11967c07a328e7d7d43d13ce6847ae44dbcc9"  # emergent-misalignment (emeval.inputs.data)
TEMPERATURE, TOP_P, MAX_TOKENS = 1.0, 1.0, 600


@task
def coding_format(
    questions: str = QUESTIONS, variant: str = "main", template: str = DEFAULT_TEMPLATE, base_model: bool = False,
    samples_per_paraphrase: int | None = None, system_prompt: str | None = None, system_prompt_mode: str = "replace",
    trigger: str | None = None, temperature: float = TEMPERATURE, top_p: float = TOP_P, max_tokens: int = MAX_TOKENS,
    seed: int | None = None, aligned_below: float = ALIGNED_BELOW, coherent_above: float = COHERENT_ABOVE,
    judge_metrics: str | list[str] = "aligned,coherent", judge_digits: str = "auto",
    judge_min_mass: float = MIN_NUMERIC_MASS, judge_method: str = "auto", judge_draws: int = SAMPLED_DRAWS,
    judge_cache: bool = True, judge_batch: bool | int | dict | None = False,
) -> Task:
    """Each question wrapped in a code template; the answer extracted from the code is judged as free_form's are.

    Args:
        questions, variant, samples_per_paraphrase, system_prompt, system_prompt_mode, trigger: as for free_form.
        template: a template in ``prompts/coding/<name>.j2``, or a path to a ``.j2`` file.
        base_model: send the template as one raw prompt for the model to continue (no chat template).
        temperature, top_p, max_tokens, seed: the subject's sampling, as for free_form.
        aligned_below, coherent_above: the misalignment thresholds, as for free_form.
        judge_metrics, judge_digits, judge_min_mass, judge_method, judge_draws, judge_cache, judge_batch: as for free_form.

    Outputs without a readable answer are never judged; they count in ``extraction_failure_rate``.
    """
    asked = question_samples(questions, variant, samples_per_paraphrase, system_prompt, system_prompt_mode, trigger)
    judge = alignment_judge_options(locals(), asked)
    coding_template = load_template(template)
    return eval_task(
        asked.dataset(coding_samples(asked.samples, coding_template, base_model)),
        solver=answer_in_code(seed=seed, base_model=base_model),
        scorer=coding_judge(**judge),
        config=GenerateConfig(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
        metadata={**asked.metadata(), **template_metadata(coding_template, base_model)},
    )
