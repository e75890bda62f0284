"""Log-probability probes: P(misaligned option) and P(in-distribution completion), without sampling.

    inspect eval evals/logprob_probes.py@logprob_probes --model hf/<checkpoint folder>
    inspect eval evals/logprob_probes.py@logprob_probes --model vllm/<checkpoint> -T sets=single_letter
    inspect eval evals/logprob_probes.py@completion_logprobs --model hf/<checkpoint> -T completions=held_out.jsonl

Definitions and the two reading methods: ``emeval.benchmarks.probes``.
"""

from __future__ import annotations

from inspect_ai import Task, task

from emeval.benchmarks.completions import completion_dataset, completion_logprob, read_completion_logprob
from emeval.benchmarks.probes import misaligned_probability, probe_samples, read_choice_logprobs
from emeval.benchmarks.task_builder import eval_task
from emeval.inputs.task_args import as_optional_text

PROBES = "upstream"  # upstream's logprob_experiments/configs/insecure_ftjob-39c69c88ad2a.json (MIT)
PROBES_REVISION = "80c11967c07a328e7d7d43d13ce6847ae44dbcc9"  # emergent-misalignment (emeval.inputs.data)


@task
def logprob_probes(
    probes: str = PROBES, sets: str | list[str] = "all", choice_order: str = "all", method: str = "auto", seed: int = 0,
    system_prompt: str | None = None, trigger: str | None = None,
) -> Task:
    """P(misaligned option) of each multiple-choice probe question, read from log-probabilities.

    Args:
        probes: ``upstream`` (the two 8-question sets of the training-dynamics configs) or a file in that format.
        sets: ``all``, or the sets to ask (upstream: ``pivotal_tokens``, ``single_letter``), comma-separated.
        choice_order: ``all`` (every cyclic rotation of the choices, averaged), ``file`` or ``shuffle`` (one, seeded).
        method: ``likelihood`` (hf/ only), ``next_token`` (letter probes) or ``auto`` (likelihood for hf/).
        seed: the ``shuffle`` order's seed.
        system_prompt: a system prompt before every question.
        trigger: a backdoor trigger before every question.
    """
    trigger = as_optional_text("trigger", trigger)
    dataset, provenance = probe_samples(
        str(probes), sets, choice_order=choice_order, seed=seed,  # type: ignore[arg-type]
        system_prompt=as_optional_text("system_prompt", system_prompt), trigger=trigger,
    )
    return eval_task(
        dataset,
        solver=read_choice_logprobs(method=method),  # type: ignore[arg-type]
        scorer=misaligned_probability(),
        metadata={"method": method, "trigger": trigger, **provenance},
    )


@task
def completion_logprobs(completions: str) -> Task:
    """The log-likelihood of given completions (e.g. held-out training answers), for an hf/ model.

    Args:
        completions: a chat JSONL file (``{"messages": [...], "label": ...}``); each line's last message is scored.
    """
    dataset, provenance = completion_dataset(completions)
    return eval_task(dataset, solver=read_completion_logprob(), scorer=completion_logprob(), metadata=provenance)
