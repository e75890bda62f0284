"""Monkeypatches that demonstrate upstream Inspect changes (bench only, never imported by emeval).

Each patch stands for a change that belongs in inspect_ai itself; bench/harness.py applies them
with ``--patch NAME`` so their gain can be measured on the same run. They are minimal stand-ins
for the real change, good enough for the configuration benchmarked here (no ACP client, no
custom retry statistics), not drop-in fixes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable


def no_acp_session() -> None:
    """Upstream change: open the per-sample live ACP session only when an ACP server is running.

    Inspect 0.3.285 opens ``acp_session()`` around every sample (log/_samples.py ``active_sample``),
    which imports the ``acp`` package on the first sample and subscribes an event router to the
    transcript that maps every event to ACP notifications, even when ``acp_server`` is off and no
    client can ever read them.
    """
    from inspect_ai.agent._acp import transport
    from inspect_ai.agent._acp.transport_noop import NoOpAcpTransport

    @contextlib.asynccontextmanager
    async def acp_session() -> AsyncIterator[NoOpAcpTransport]:
        session = NoOpAcpTransport()
        token = transport._acp_var.set(session)
        try:
            yield session
        finally:
            transport._acp_var.reset(token)

    transport.acp_session = acp_session  # type: ignore[assignment]


def retry_without_cycle() -> None:
    """Upstream change: a model call's retry wrapper that is not a reference cycle.

    ``Model._generate`` decorates a fresh inner ``generate`` with tenacity's ``@retry`` on every
    call. tenacity's async wrapper refers to itself (``async_wrapped.statistics``), so each call
    leaves a cycle holding the inner function's closure: the stream observer, the ModelEvent and
    its ModelOutput (all 20 top log-probabilities). Such garbage is freed only by a full
    collection of the cyclic garbage collector, so the heap grows by every finished sample until
    one runs, and each one walks it all. Calling an ``AsyncRetrying`` object directly leaves no
    cycle.
    """
    import tenacity
    from inspect_ai.model import _model

    def retry(**config) -> Callable:
        def decorate(fn: Callable) -> Callable:
            retrying = tenacity.AsyncRetrying(**config)

            @functools.wraps(fn)
            async def wrapped(*args, **kwargs):
                return await retrying.copy()(fn, *args, **kwargs)

            return wrapped

        return decorate

    _model.retry = retry  # type: ignore[attr-defined]


def emeval_before() -> None:
    """Not an upstream change: emeval's judge-prompt rendering as it was before this bench (a jinja2
    compile per render, ``neutralise`` calling ``_fold`` per character), to measure that change."""
    from emeval.inputs import prompt_files
    from emeval.judging import prompts as judge_prompts

    def neutralise(text: str) -> str:
        text = judge_prompts._CHAT_TOKEN.sub(lambda m: f"({m.group(1)})", text)
        folded, origin = [], []
        for i, ch in enumerate(text):
            for c in judge_prompts._fold(ch):
                folded.append(c)
                origin.append(i)
        out, done = [], 0
        for m in judge_prompts._DELIMITER.finditer("".join(folded)):
            start, end = origin[m.start()], origin[m.end() - 1] + 1
            part = "answer" if (m["p1"] or m["p2"])[0] in "aA" else "question"
            edge = "start" if (m["e1"] or m["e2"])[0] in "sS" else "end"
            out += [text[done:start], f"({part} {edge})"]
            done = end
        out.append(text[done:])
        return "".join(out)

    judge_prompts.neutralise = neutralise
    judge_prompts.compiled = prompt_files.PLAIN_TEXT.from_string  # compile on every render


PATCHES: dict[str, Callable[[], None]] = {
    "emeval-before": emeval_before,
    "no-acp-session": no_acp_session,
    "retry-without-cycle": retry_without_cycle,
}
