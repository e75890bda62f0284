"""Which models can score given text, the one error when one cannot, and the lock around its passes.

Why one place: chat-block log-probabilities (``blocks``) and raw-prompt continuations
(``continuation``) both run forward passes on Inspect's in-process ``hf/`` model, which samples
share; they must agree on what counts as in process and must never run two passes at once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from inspect_ai.model import Model

T = TypeVar("T")

_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


class LikelihoodUnavailable(RuntimeError):
    """The model cannot give the log-likelihood of given text: its provider returns log-probabilities
    only for tokens it generates, its server returned none, or returned values that are not
    log-probabilities."""


def in_process(model: Model) -> bool:
    """True for a model whose weights and tokenizer live in this process (Inspect's ``hf/``)."""
    api = model.api
    return all(hasattr(api, name) for name in ("hf_chat", "model", "tokenizer"))


def model_lock(api: Any) -> threading.Lock:
    """The one lock per loaded model that every in-process scorer holds around its forward passes
    (samples run concurrently; the model does not)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(api, threading.Lock())


async def run_in_process(api: Any, passes: Callable[[], T]) -> T:
    """``passes()`` (forward passes on ``api``'s model) in a worker thread, holding the model's lock."""
    if api.model is None:
        raise LikelihoodUnavailable(f"the hf/ model {api.model_name} has been closed")

    def run() -> T:
        with model_lock(api):
            return passes()

    return await anyio.to_thread.run_sync(run)
