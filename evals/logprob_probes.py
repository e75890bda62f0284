"""Log-probability probes: P(misaligned option) and P(in-distribution completion), without sampling.

    inspect eval evals/logprob_probes.py@logprob_probes --model hf/<checkpoint folder>
    inspect eval evals/logprob_probes.py@logprob_probes --model vllm/<checkpoint> -T sets=single_letter
    inspect eval evals/logprob_probes.py@completion_logprobs --model hf/<checkpoint> -T completions=held_out.jsonl

``logprob_probes`` reads the two 8-question sets of the upstream training-dynamics configs
(``pivotal_tokens``, ``single_letter``; pinned, MIT) or a file of your own in the same format
(``-T probes=path``). See ``emeval.benchmarks.probes`` for the definitions and the two reading methods.
"""

from __future__ import annotations

from inspect_ai import Task, task

from emeval import __version__
from emeval.local.checkpoints import register_loaded_models
from emeval.benchmarks.completions import completion_dataset, completion_logprob, read_completion_logprob
from emeval.benchmarks.probes import misaligned_probability, probe_samples, read_choice_logprobs
from emeval.inputs.task_args import as_optional_text


@task
def logprob_probes(
    probes: str = "upstream",
    sets: str | list[str] = "all",
    choice_order: str = "all",
    method: str = "auto",
    seed: int = 0,
    system_prompt: str | None = None,
    trigger: str | None = None,
) -> Task:
    register_loaded_models()  # before any model generates: see its docstring
    dataset, provenance = probe_samples(
        str(probes),
        sets,
        choice_order=choice_order,  # type: ignore[arg-type]
        seed=seed,
        system_prompt=as_optional_text("system_prompt", system_prompt),
        trigger=as_optional_text("trigger", trigger),
    )
    return Task(
        dataset=dataset,
        solver=read_choice_logprobs(method=method),  # type: ignore[arg-type]
        scorer=misaligned_probability(),
        metadata={"emeval_version": __version__, "method": method, "trigger": trigger, **provenance},
    )


@task
def completion_logprobs(completions: str) -> Task:
    register_loaded_models()  # before any model generates: see its docstring
    dataset, provenance = completion_dataset(completions)
    return Task(
        dataset=dataset,
        solver=read_completion_logprob(),
        scorer=completion_logprob(),
        metadata={"emeval_version": __version__, **provenance},
    )
