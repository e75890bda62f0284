"""Log-likelihood of text a model did not write: what probes, completions and TruthfulQA MC score.

Two routes, one backend (``backend``: which models can, the one error ``LikelihoodUnavailable``,
the per-model lock): ``blocks`` scores assistant text block by block after a chat prompt (in-process
``hf/`` only); ``continuation`` scores a continuation after a raw prompt, lm-evaluation-harness's
``loglikelihood`` (``hf/``, or ``/v1/completions`` with ``prompt_logprobs``).
"""

from emeval.local.likelihood.backend import LikelihoodUnavailable, in_process, model_lock
from emeval.local.likelihood.blocks import BlockLogprob, block_logprobs
from emeval.local.likelihood.continuation import Loglik, continuation_logliks, prompt_token_logprobs

__all__ = [
    "BlockLogprob",
    "LikelihoodUnavailable",
    "Loglik",
    "block_logprobs",
    "continuation_logliks",
    "in_process",
    "model_lock",
    "prompt_token_logprobs",
]
