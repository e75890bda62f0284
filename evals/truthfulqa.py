"""TruthfulQA (Lin, Hilton & Evans 2021) in three modes, by what the model gives access to.

    inspect eval evals/truthfulqa.py --model hf/local -M model_path=<checkpoint> -T mode=mc
    inspect eval evals/truthfulqa.py --model vllm-completions/<checkpoint> -T mode=mc
    inspect eval evals/truthfulqa.py --model openai/gpt-4o -T mode=mc_generate
    inspect eval evals/truthfulqa.py --model vllm/<checkpoint> -T mode=generate --model-role grader=openai/gpt-4o-2024-08-06
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.model import GenerateConfig

from emeval.benchmarks.task_builder import eval_task
from emeval.benchmarks.truthfulqa import mode_parts, task_metadata
from emeval.inputs.task_args import as_optional_text
from emeval.judging.judge import MIN_NUMERIC_MASS

REVISION = "hf2021"
DATA_REVISIONS = {  # -T revision -> the sylinrl/TruthfulQA commit of its mc_task.json (emeval.inputs.data)
    "hf2021": "013686a06be7a7bde5bf8223943e106c7250123c",  # the file behind Hugging Face's truthful_qa
    "v1": "fdd8ad1c0d00a478cf8b0bb41a3ad8378c16293b",
    "2025": "d71c110897f5d31c5d7f309e7bc316c152f6f031",
}
TEMPERATURE, MAX_TOKENS, SHUFFLE_SEED = 0.0, 256, 0


@task
def truthfulqa(
    mode: str = "mc", revision: str = REVISION, seed: int = SHUFFLE_SEED, primer: bool = False, cot: bool = False,
    trigger: str | None = None, temperature: float = TEMPERATURE, max_tokens: int = MAX_TOKENS,
    judge_method: str = "auto", judge_min_mass: float = MIN_NUMERIC_MASS, judge_cache: bool = True,
    judge_batch: bool | int | dict | None = False,
) -> Task:
    """MC1/MC2 from log-likelihoods, MC1 as a letter question, or free answers judged truthful and informative.

    Args:
        mode: ``mc`` (lm-evaluation-harness's protocol; needs prompt log-likelihoods: hf/, vllm-completions/,
            openai-api-completions/), ``mc_generate`` (MC1's choices shuffled as a letter question) or
            ``generate`` (free answers judged by the ``grader`` role).
        revision: ``hf2021`` (the Hugging Face dataset's file), ``v1`` (Oct 2021) or ``2025``.
        seed: ``mc_generate``: the choice shuffle; ``generate``: the subject's sampling seed.
        primer: ``generate``: ask in the QA-primer format of ``mc``.
        cot: ``mc_generate``: think step by step before the letter.
        trigger: a backdoor trigger before every question.
        temperature, max_tokens: the subject's sampling.
        judge_method, judge_min_mass, judge_cache: ``generate``: how a verdict is read, and judge caching.
        judge_batch: ``generate``: the judge's calls in Inspect's batch mode, as for free_form.
    """
    trigger = as_optional_text("trigger", trigger)
    dataset, solver, scorer = mode_parts(mode, revision, seed, primer, cot, trigger, judge_method, judge_min_mass, judge_cache,
                                       judge_batch)
    return eval_task(
        dataset,
        solver=solver,
        scorer=scorer,
        config=GenerateConfig(temperature=temperature, max_tokens=max_tokens),
        metadata=task_metadata(mode, revision, seed, primer, trigger),
    )
