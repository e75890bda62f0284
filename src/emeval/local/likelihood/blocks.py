"""Log-likelihood of given assistant text under an in-process ``hf/`` model, block by block.

Why: Inspect's providers return log-probabilities only for tokens they generate. Probes that
score a fixed continuation ("... My wish is that you torture my enemies") or a whole training
completion need the probability of text the model did not write, which only a model running in
this process can give. The prompt is rendered with the provider's own ``hf_chat`` (the exact
text Inspect would generate from, chat template and all) and the assistant text is appended;
tokens are mapped back to the text blocks by character offsets, so no block boundary is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inspect_ai.model import ChatMessage, Model

from emeval.local.likelihood.backend import LikelihoodUnavailable, in_process, run_in_process


@dataclass
class BlockLogprob:
    """The log-likelihood of one block of assistant text, given everything before it."""

    text: str
    logprob: float
    tokens: list[tuple[str, float]] = field(default_factory=list)
    aligned: bool = True
    """False when a token straddles the block's start or end (it is counted in the block)."""


async def block_logprobs(
    model: Model, conversations: list[tuple[list[ChatMessage], list[str]]]
) -> list[list[BlockLogprob]]:
    """For each (prompt messages, assistant text blocks): the log-likelihood of every block.

    The blocks are concatenated into one assistant turn after the rendered prompt. Forward
    passes run in a worker thread, one at a time per model (concurrent samples share it).
    """
    if not in_process(model):
        raise LikelihoodUnavailable(
            f"{model} does not run in this process, so the probability of given text cannot be "
            "computed (providers return log-probabilities only for tokens they generate). Use an "
            "hf/ model (e.g. --model hf/<checkpoint folder>)."
        )
    api = model.api
    return await run_in_process(api, lambda: _score(api, conversations))


def _score(api: Any, conversations: list[tuple[list[ChatMessage], list[str]]]) -> list[list[BlockLogprob]]:
    import torch

    tokenizer = api.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise LikelihoodUnavailable(
            f"{api.model_name}: block log-likelihoods need a fast (tokenizers-backed) tokenizer for "
            "character offsets; this model's tokenizer is a slow one."
        )
    texts, spans = [], []
    for messages, blocks in conversations:
        prompt = api.hf_chat(list(messages), [])
        start, block_spans = len(prompt), []
        for block in blocks:
            block_spans.append((start, start + len(block)))
            start += len(block)
        texts.append(prompt + "".join(blocks))
        spans.append(block_spans)
    call_args = {k: v for k, v in (api.tokenizer_call_args or {}).items() if k not in ("return_tensors", "padding")}
    encodings = [tokenizer(text, return_offsets_mapping=True, **call_args) for text in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(e["input_ids"]) for e in encodings)
    ids = torch.full((len(texts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(texts), width), dtype=torch.long)
    for row, enc in enumerate(encodings):
        n = len(enc["input_ids"])
        ids[row, :n] = torch.tensor(enc["input_ids"])
        mask[row, :n] = 1
    device = api.model.device
    with torch.no_grad():
        logits = api.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = logprobs.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1).cpu()

    results = []
    for row, (enc, block_spans, (_, blocks)) in enumerate(zip(encodings, spans, conversations, strict=True)):
        offsets = enc["offset_mapping"]
        tokens = [tokenizer.decode([token]) for token in enc["input_ids"]]
        scored = []
        for (begin, end), text in zip(block_spans, blocks, strict=True):
            members, aligned = [], True
            for i in range(1, len(offsets)):  # the first token has no prediction
                s, e = offsets[i]
                inside = (s < end and e > begin) if e > s else begin <= s < end
                if inside:
                    members.append((tokens[i], float(picked[row, i - 1])))
                    aligned = aligned and s >= begin and e <= end
            if text and not members:
                raise ValueError(f"{api.model_name}: no token of the text block {text!r} could be located")
            scored.append(BlockLogprob(text, sum(lp for _, lp in members), members, aligned))
        results.append(scored)
    return results
