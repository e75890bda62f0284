"""Pieces shared by the tests' scripted (``mockllm``) subjects and judges."""

from __future__ import annotations

import re

from inspect_ai.model import ModelOutput, ModelUsage

_ANSWER = re.compile(r"\[ANSWER START\]\n(.*?)\n\[ANSWER END\]", re.S)


def with_usage(output: ModelOutput) -> ModelOutput:
    """Scripted outputs carry token usage, so mockllm never downloads a tokenizer to count them."""
    output.usage = ModelUsage(input_tokens=5, output_tokens=5, total_tokens=10)
    return output


def answer_in(prompt: str) -> str:
    """The answer inside a judge prompt rendered from ``judges/*.j2``."""
    found = _ANSWER.search(prompt)
    if found is None:
        raise AssertionError(f"not a judge prompt: {prompt[:200]!r}")
    return found.group(1)
