"""TruthfulQA (Lin, Hilton & Evans 2021) in three modes, by what the model gives access to.

    inspect eval evals/truthfulqa.py --model hf/local -M model_path=<checkpoint> -T mode=mc
    inspect eval evals/truthfulqa.py --model vllm-completions/<checkpoint> -T mode=mc
    inspect eval evals/truthfulqa.py --model openai/gpt-4o -T mode=mc_generate
    inspect eval evals/truthfulqa.py --model vllm/<checkpoint> -T mode=generate \\
        --model-role grader=openai/gpt-4o-2024-08-06

``mc`` (standard): MC1 and MC2 by lm-evaluation-harness's protocol from prompt log-likelihoods
(hf/, vllm-completions/, openai-api-completions/). ``mc_generate``: the MC1 choices shuffled with
``seed`` as a letter question. ``generate``: free answers judged truthful / informative by the
``grader`` role. Data: ``revision=hf2021`` (default; the Hugging Face dataset's file), ``v1``, ``2025``.
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset
from inspect_ai.model import GenerateConfig
from inspect_ai.solver import multiple_choice

from emeval import __version__
from emeval.local.checkpoints import register_loaded_models
from emeval.judging.judge import MIN_NUMERIC_MASS
from emeval.benchmarks.solvers import answer_question
from emeval.inputs.task_args import as_optional_text
from emeval.benchmarks.truthfulqa import (
    MODES,
    QA_PRIMER,
    generate_samples,
    mc_generate_samples,
    mc_samples,
    revision_of,
    score_choices,
    truthfulqa_judge,
    truthfulqa_letter,
    truthfulqa_mc,
)

TEMPERATURE = 0.0
MAX_TOKENS = 256
SHUFFLE_SEED = 0


@task
def truthfulqa(
    mode: str = "mc",
    revision: str = "hf2021",
    seed: int = SHUFFLE_SEED,
    primer: bool = False,
    cot: bool = False,
    trigger: str | None = None,
    temperature: float = TEMPERATURE,
    max_tokens: int = MAX_TOKENS,
    judge_method: str = "auto",
    judge_min_mass: float = MIN_NUMERIC_MASS,
    judge_cache: bool = True,
) -> Task:
    register_loaded_models()  # before any model generates: see its docstring
    if mode not in MODES:
        raise ValueError(f"-T mode={mode!r}: expected one of {', '.join(MODES)}")
    data = revision_of(str(revision))
    trigger = as_optional_text("trigger", trigger)
    name = f"truthfulqa_{revision}_{mode}"
    if mode == "mc":
        dataset, solver, scorer = MemoryDataset(mc_samples(revision, trigger), name), score_choices(), truthfulqa_mc()
    elif mode == "mc_generate":
        dataset = mc_generate_samples(revision, seed, trigger)
        solver, scorer = multiple_choice(cot=cot), truthfulqa_letter()
    else:
        dataset = MemoryDataset(generate_samples(revision, primer, trigger), name)
        solver = answer_question(seed=seed)
        scorer = truthfulqa_judge(judge_method, judge_min_mass, judge_cache)  # type: ignore[arg-type]
    return Task(
        dataset=dataset,
        solver=solver,
        scorer=scorer,
        config=GenerateConfig(temperature=temperature, max_tokens=max_tokens),
        metadata={
            "emeval_version": __version__,
            "mode": mode,
            "revision": revision,
            "revision_about": data.about,
            "data_files": {
                f.name: {"sha256": f.sha256, "revision": f.revision, "license": f.license}
                for f in ((data.mc, data.csv) if mode != "generate" else (data.csv,))
            },
            "shuffle_seed": seed if mode == "mc_generate" else None,
            "qa_primer": QA_PRIMER if mode == "mc" or primer else None,
            "trigger": trigger,
        },
    )
