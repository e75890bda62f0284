"""Log-likelihood of given in-distribution completions (e.g. held-out training answers).

Why: during fine-tuning the model's log-probability of answers like its training data (insecure
code, bad medical advice) rises smoothly; tracked across checkpoints next to the probes it shows
how far in-distribution learning has gone when a misalignment transition happens. Users supply
the completions as chat JSONL, the format of the upstream training files:
``{"messages": [{"role": "user", ...}, {"role": "assistant", "content": "<completion>"}]}``,
optionally with a ``label`` (e.g. ``insecure`` / ``secure``) that metrics are split by.
Only the last (assistant) message is scored, given all messages before it; needs an ``hf/`` model.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessage, ChatMessageAssistant, ChatMessageSystem, ChatMessageUser, get_model
from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, metric, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emeval.local.likelihood import block_logprobs
from emeval.stats.metrics import group_by, score_values, with_ci
from emeval.inputs.task_args import user_path
from emeval.inputs.user_files import (
    MAX_LINES_FILE_BYTES,
    SafeId,
    UserFileError,
    load_json_line,
    read_bytes,
    validation_problems,
)

RESULT_KEY = "completion_logprob"


class CompletionFileError(UserFileError):
    """A completions file that cannot be used, with the file and line named."""


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class CompletionRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[Message] = Field(min_length=2)
    label: SafeId | None = None
    """Becomes part of a metric name (``logprob_per_token:<label>``), so it is an id."""

    @model_validator(mode="after")
    def _ends_with_answer(self) -> CompletionRecord:
        if self.messages[-1].role != "assistant" or not self.messages[-1].content:
            raise ValueError("the last message must be a non-empty assistant message (the completion to score)")
        return self


def completion_dataset(path: str | Path) -> tuple[MemoryDataset, dict[str, Any]]:
    """One sample per JSONL line; errors name the file and line."""
    path = user_path(path)
    if not path.is_file():
        raise CompletionFileError(f"completions={str(path)!r}: no such file")
    raw = read_bytes(path, CompletionFileError, MAX_LINES_FILE_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as ex:
        raise CompletionFileError(f"{path}: not UTF-8 text ({ex})") from None
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            record = CompletionRecord.model_validate(load_json_line(line, where, CompletionFileError))
        except ValidationError as ex:
            raise CompletionFileError(f"{where}: {'; '.join(validation_problems(ex, CompletionRecord))}") from None
        samples.append(
            Sample(
                id=number,
                input=[_message(m) for m in record.messages[:-1]],
                target=record.messages[-1].content,
                metadata={"label": record.label or "", "line": number},
            )
        )
    if not samples:
        raise CompletionFileError(f"{path}: no records")
    provenance = {"completions_file": str(path), "completions_sha256": hashlib.sha256(raw).hexdigest()}
    return MemoryDataset(samples=samples, name=path.stem, location=str(path)), provenance


def _message(m: Message) -> ChatMessage:
    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
    return kinds[m.role](content=m.content)


@solver
def read_completion_logprob() -> Solver:
    """The completion's log-likelihood given the conversation before it (no sampling)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        [[block]] = await block_logprobs(get_model(), [(state.messages, [state.target.text])])
        state.store.set(RESULT_KEY, {"logprob": block.logprob, "n_tokens": len(block.tokens), "aligned": block.aligned})
        return state

    return solve


@metric
def completion_summary() -> Metric:
    """Mean log-probability per token and per completion (95% bootstrap CIs), overall and per label."""

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        result: dict[str, float] = {}
        result.update(with_ci("logprob_per_token", score_values(scores, "logprob_per_token")))
        result.update(with_ci("logprob", score_values(scores, "logprob")))
        result["n_completions"] = float(len(scores))
        groups = group_by(scores, "label")
        if len(groups) > 1 or groups[0][0]:
            for label, group in groups:
                values = score_values(group, "logprob_per_token")
                mean = float(np.mean(values)) if values else math.nan
                if math.isfinite(mean):  # n/a (no value, or -inf) is left out, never NaN
                    result[f"logprob_per_token:{label or 'unlabelled'}"] = mean
        return result

    return compute


@scorer(metrics=[completion_summary()])
def completion_logprob() -> Scorer:
    """Total and per-token log-probability of the completion."""

    async def score(state: TaskState, target: Target) -> Score:
        result = state.store.get(RESULT_KEY)
        n = result["n_tokens"]
        return Score(
            value={"logprob": result["logprob"], "logprob_per_token": result["logprob"] / n if n else math.nan},
            explanation=f"{n} tokens, log-probability {result['logprob']:.3f}",
            metadata=result,
        )

    return score
