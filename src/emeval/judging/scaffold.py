"""The one scaffold every judge scorer is built on: which model judges, with which settings, and
how each score records both.

emeval's judges (the 0-100 alignment judge and its extra judges, the categorical label judge,
TruthfulQA's yes/no judge, StrongREJECT's rubric) differ in what they ask and how they read the
reply; everything around that is the same, so it lives here once:

* ``judge_setup`` range-checks every setting under the name of its ``-T`` parameter when the
  scorer is built, so a value off the scale is a clear error before any sample runs, never a
  threshold that quietly decides every answer.
* ``JudgeSetup.model`` resolves the judge: the ``grader`` model role, or the model named for an
  extra judge. Every call then goes through ``judge.call_judge`` (Inspect's cache, the greedy
  view of an ``hf/`` judge, errors that name the judge and its endpoint).
* ``JudgeSetup.record`` is ``Score.metadata["judge"]``, with the same keys for every judge:
  ``model``, ``role`` (None for a judge named by model), ``method`` (what was used),
  ``requested_method``, ``prompts`` (metric -> ``{source, sha256}``), ``hardened``, ``batch`` (how the calls
  were sent: Inspect's batch settings, or None) and
  ``parameters``: the settings under the names the scorer takes them (``min_mass``, ``draws``,
  ``digits``, ...; the names its recorded options carry) plus the judge's fixed call settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inspect_ai.model import BatchConfig, GenerateConfig, Model, get_model

from emeval.inputs.task_args import as_batch, as_count, as_flag, as_number_in
from emeval.judging.judge import TOP_LOGPROBS

JUDGE_ROLE = "grader"
DEFAULT_JUDGE = "openai/gpt-4o-2024-08-06"
METHODS = ("auto", "logprob", "sampled")
DIGITS = ("auto", "whole", "split")
LOGPROB_CALL = {"top_logprobs": TOP_LOGPROBS}
"""The fixed setting a log-probability judge records (``judge.judge_config``)."""


def _one_of(name: str, choices: tuple[str, ...]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"-T {name}={value!r}: expected {', '.join(choices[:-1])} or {choices[-1]}")

    return check


def _labels(value: Any) -> None:
    labels = list(value) if isinstance(value, (list, tuple)) else None
    if not labels or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        raise ValueError(f"judge labels {value!r}: expected distinct, non-empty label names")


CHECKS: dict[str, Callable[[Any], Any]] = {
    "digits": _one_of("judge_digits", DIGITS),
    "draws": lambda v: as_count("judge_draws", v),
    "min_mass": lambda v: as_number_in("judge_min_mass", v, 0, 1),
    "aligned_below": lambda v: as_number_in("aligned_below", v, 0, 100),
    "coherent_above": lambda v: as_number_in("coherent_above", v, 0, 100),
    "cache": lambda v: as_flag("judge_cache", v),
    "judge_reasoning": lambda v: as_flag("judge_reasoning", v),
    "labels": _labels,
}
"""Judge setting -> its check, in the order they run (the first bad one is named)."""


@dataclass(frozen=True)
class JudgeSetup:
    """A judge scorer's checked settings and the model it asks."""

    requested_method: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    model_name: str | None = None
    """An extra judge's model; None: the ``grader`` role."""
    batch: BatchConfig | None = None
    """Inspect's batch mode for the judge's calls (``-T judge_batch``); None: each call on its own."""

    def model(self) -> Model:
        """The judge, with ``batch`` in its generate config: the provider (OpenAI, Anthropic, Google,
        Together) then pools the calls of concurrent samples into batch jobs. A role given its own
        ``batch`` on the command line (``--model-role grader={model: ..., batch: ...}``) keeps it."""
        config = GenerateConfig(batch=self.batch) if self.batch else GenerateConfig()
        if self.model_name:
            return get_model(self.model_name, config=config)
        return get_model(role=JUDGE_ROLE, default=DEFAULT_JUDGE, config=config)

    def record(self, model: Model, methods: Iterable[str], prompts: Mapping[str, Any]) -> dict[str, Any]:
        """``Score.metadata["judge"]``: the judge's identity, the prompts it saw (anything with a
        ``source`` and ``sha256``) and its parameters."""
        return {
            "model": str(model),
            "role": None if self.model_name else JUDGE_ROLE,
            "method": "+".join(sorted(set(methods))),
            "requested_method": self.requested_method,
            "prompts": {name: {"source": p.source, "sha256": p.sha256} for name, p in prompts.items()},
            "hardened": True,  # every judge passes question and answer through prompts.neutralise
            "parameters": dict(self.parameters),
            # how the calls were sent, not what they asked: a batched verdict is the same verdict
            "batch": self.batch.model_dump(exclude_none=True) if self.batch else None,
        }


def judge_setup(
    method: str = "auto",
    model: str | None = None,
    methods: tuple[str, ...] = METHODS,
    fixed: Mapping[str, Any] | None = None,
    batch: Any = None,
    **settings: Any,
) -> JudgeSetup:
    """Check ``method`` (one of ``methods``) and every setting, and return the judge's setup.

    ``settings`` are what a user can set (each must have a check in ``CHECKS``); ``fixed`` are the
    judge's own constants (``top_logprobs``, a rubric's temperature), recorded as they are; ``batch``
    is ``-T judge_batch`` (``task_args.as_batch``), recorded apart from the parameters."""
    _one_of("judge_method", methods)(method)
    unknown = sorted(set(settings) - set(CHECKS))
    if unknown:
        raise TypeError(f"judge setting(s) {', '.join(unknown)} have no range check in scaffold.CHECKS")
    for name, check in CHECKS.items():
        if name in settings:
            check(settings[name])
    if "labels" in settings:
        settings["labels"] = list(settings["labels"])
    return JudgeSetup(method, {**settings, **(fixed or {})}, model, as_batch("judge_batch", batch))
