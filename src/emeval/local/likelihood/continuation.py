"""Log-likelihood of a continuation after a raw prompt: lm-evaluation-harness's ``loglikelihood``.

Multiple-choice benchmarks in the standard protocol (TruthfulQA MC1/MC2) score each choice by
log P(choice | prompt) under the model, with no chat template. A chat API cannot say that: it
answers text. Two routes can, and both split tokens exactly as lm-evaluation-harness does
(encode ``context + continuation`` and ``context``; the continuation is what the first has
beyond the second's length; trailing whitespace of the context moves to the continuation):

* ``hf/``: Inspect's provider already holds the transformers model and tokenizer in process;
  each (context, continuation) pair is one forward pass here, as lm-eval's HF backend with
  batch size 1 (summed float log-softmax of the continuation tokens, no attention mask).
* ``vllm-completions/`` and ``openai-api-completions/``: the ``/v1/completions`` endpoint takes
  the raw prompt, and ``prompt_logprobs`` (a vLLM extension, also in SGLang) returns the
  log-probability of every prompt token. The server tokenises; the continuation's token count
  is the difference between the prompt lengths of ``context + continuation`` and ``context``.

Any other provider raises :class:`LikelihoodUnavailable`, naming what to use instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inspect_ai.model import ChatMessageUser, GenerateConfig, Model

from emeval.local.likelihood.backend import LikelihoodUnavailable, in_process, run_in_process
from emeval.sanitize.logprobs import impossible_logprob

CHAT_ONLY_SERVERS = {"vllm": "vllm-completions", "openai-api": "openai-api-completions"}
"""Chat-endpoint providers whose servers can give prompt log-likelihoods through the raw
completions endpoint instead, and the provider that reaches it."""


@dataclass(frozen=True)
class Loglik:
    """Summed log-probability of one continuation's tokens, given the context."""

    logprob: float
    n_tokens: int
    greedy: bool | None = None
    """Whether greedy decoding would produce the continuation (hf/ only; None when unknown)."""


def split_context(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule: trailing whitespace of the context belongs to the continuation."""
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + continuation


def provider_name(model: Model) -> str:
    return str(model).split("/", 1)[0]


async def continuation_logliks(model: Model, context: str, continuations: Sequence[str]) -> list[Loglik]:
    """log P(continuation | context) for each continuation, by the model's route (module docstring)."""
    if not context:
        raise ValueError("continuation_logliks: the context must not be empty")
    api = model.api
    if in_process(model):
        return await run_in_process(api, lambda: _hf_logliks(api, context, list(continuations)))
    if _is_raw_completions(api):
        return await _completions_logliks(model, context, list(continuations))
    provider = provider_name(model)
    hint = ""
    if provider in CHAT_ONLY_SERVERS:
        name = str(model).split("/", 1)[1]
        hint = f" Use the raw completions endpoint of the same server instead: --model {CHAT_ONLY_SERVERS[provider]}/{name}."
    raise LikelihoodUnavailable(
        f"model {model} cannot give prompt log-likelihoods (needed by -T mode=mc, the standard MC1/MC2 "
        f"protocol): only hf/ (local transformers), vllm-completions/ and openai-api-completions/ "
        f"(prompt_logprobs) can.{hint} For API models use -T mode=mc_generate (letter choice) or "
        f"-T mode=generate (judged answers)."
    )


# -- hf/: in process ------------------------------------------------------------------------------

def encode(tokenizer: Any, text: str) -> list[int]:
    """lm-eval's ``tok_encode``: the tokenizer's own special-token default (e.g. a BOS for Llama),
    none added when the text already starts with the BOS text."""
    bos = tokenizer.bos_token
    kwargs = {"add_special_tokens": False} if bos and text.startswith(bos) else {}
    return list(tokenizer.encode(text, **kwargs))


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's ``_encode_pair`` for causal models: (context tokens, continuation tokens)."""
    context, continuation = split_context(context, continuation)
    whole = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    return context_ids, whole[len(context_ids) :]


def hf_loglik(model: Any, context_ids: list[int], continuation_ids: list[int]) -> Loglik:
    """One forward pass over context + continuation (minus the last token), as lm-eval's HF backend."""
    import torch

    if not continuation_ids:
        raise ValueError("the continuation encodes to no tokens")
    max_length = _max_length(model)
    tokens = (context_ids + continuation_ids)[-(max_length + 1) :][:-1]
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(torch.tensor([tokens], dtype=torch.long, device=device)).logits
        logprobs = torch.nn.functional.log_softmax(logits, dim=-1)[0, -len(continuation_ids) :]
        target = torch.tensor(continuation_ids, dtype=torch.long, device=device)
        greedy = bool((logprobs.argmax(dim=-1) == target).all())
        picked = torch.gather(logprobs, 1, target.unsqueeze(-1)).squeeze(-1)
        return Loglik(float(picked.sum()), len(continuation_ids), greedy)


def _max_length(model: Any) -> int:
    """The context window, as lm-eval reads it from the model config (else its 2048 default)."""
    config = model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(getattr(config, attr, None), int):
            return int(getattr(config, attr))
    return 2048


def _hf_logliks(api: Any, context: str, continuations: list[str]) -> list[Loglik]:
    results = []
    for continuation in continuations:
        context_ids, continuation_ids = encode_pair(api.tokenizer, context, continuation)
        results.append(hf_loglik(api.model, context_ids, continuation_ids))
    return results


# -- /v1/completions with prompt_logprobs ---------------------------------------------------------

PROMPT_LOGPROBS_CONFIG = GenerateConfig(max_tokens=1, temperature=0.0, prompt_logprobs=1, seed=0)


def _is_raw_completions(api: Any) -> bool:
    from inspect_ai.model._providers.openai_compatible_completions import OpenAICompatibleCompletionsAPI

    classes: tuple[type, ...] = (OpenAICompatibleCompletionsAPI,)
    try:
        from inspect_ai.model._providers.vllm_completions import VLLMCompletionsAPI

        classes += (VLLMCompletionsAPI,)
    except ImportError:
        pass
    return isinstance(api, classes)


async def prompt_token_logprobs(model: Model, prompt: str) -> list[float]:
    """Log-probability of each prompt token after the first, from ``prompt_logprobs``."""
    output = await model.generate([ChatMessageUser(content=prompt)], config=PROMPT_LOGPROBS_CONFIG)
    if output.error:
        raise LikelihoodUnavailable(f"model {model} failed to score a prompt: {output.error}")
    choice = output.choices[0] if output.choices else None
    if choice is None or choice.prompt_logprobs is None or not choice.prompt_logprobs.content:
        raise LikelihoodUnavailable(
            f"model {model} returned no prompt_logprobs: the server behind it must support vLLM's "
            "prompt_logprobs extension on /v1/completions (vLLM, SGLang)."
        )
    values = [float(p.logprob) for p in choice.prompt_logprobs.content]
    for position, value in enumerate(values, start=1):
        if impossible_logprob(value):
            raise LikelihoodUnavailable(
                f"model {model} returned an impossible prompt log-probability {value!r} "
                f"(prompt token {position}): not a probability, so no likelihood is computed from it"
            )
    return values


async def _completions_logliks(model: Model, context: str, continuations: list[str]) -> list[Loglik]:
    stripped, _ = split_context(context, "")
    prompts = [stripped] + [context + c for c in continuations]
    scored = await asyncio.gather(*(prompt_token_logprobs(model, p) for p in prompts))
    n_context = len(scored[0])
    results = []
    for continuation, logprobs in zip(continuations, scored[1:], strict=True):
        n = len(logprobs) - n_context
        if n < 1:
            raise LikelihoodUnavailable(
                f"model {model}: the continuation {continuation!r} added no prompt tokens "
                f"({len(logprobs)} scored tokens with it, {n_context} without)"
            )
        results.append(Loglik(float(sum(logprobs[-n:])), n))
    return results
