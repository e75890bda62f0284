"""Solvers: how a subject model is asked a question."""

from __future__ import annotations

import hashlib
from typing import Any

from inspect_ai.model import CachePolicy
from inspect_ai.solver import Generate, Solver, TaskState, solver


def sample_seed(seed: int, sample_id: str | int) -> int:
    """A per-sample seed derived from the run seed.

    Repeated samples of one paraphrase must differ (the paper samples 100 answers per
    paraphrase at temperature 1), yet a rerun with the same seed must give the same answers.
    """
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def answer_cache(sample_id: str | int) -> CachePolicy:
    """Inspect's cache for one sample's answer.

    Inspect keys its cache on model, prompt and config, and the repeats of a paraphrase share all
    three: unscoped, the first answer would be served to all 100 repeats. Scoped to the sample id,
    each repeat keeps its own answer and a rerun of the same sample reads it back.
    """
    return CachePolicy(per_epoch=True, scopes={"sample_id": str(sample_id)})


@solver
def answer_question(seed: int | None = None, cache: bool = False) -> Solver:
    """Generate one answer; with ``seed`` set, each sample gets its own derived seed; with
    ``cache``, each sample's answer goes through Inspect's cache (``answer_cache``)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"-T seed={seed!r}: expected a whole number")  # a word would silently seed too

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        config: dict[str, Any] = {}
        if seed is not None:
            config["seed"] = sample_seed(seed, state.sample_id)
        if cache:
            config["cache"] = answer_cache(state.sample_id)
        return await generate(state, **config)

    return solve
