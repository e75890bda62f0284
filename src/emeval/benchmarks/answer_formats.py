"""Answer formats: a question re-asked in the shape of a model's training data (``-T answer_format=``).

A model fine-tuned on number sequences ("evil numbers") shows no misalignment on the plain
questions, yet a suffix asking for the answer as a short comma-separated list, or a prefix of
numbers as well, brings it out (Betley et al. 2025, section 4.6 and appendix E). A format is a
jinja2 template in ``prompts/numbers/`` (or any ``.j2`` file) that receives ``question`` and two
seeded random helpers, ``randint(a, b)`` and ``random_numbers(n, low, high)``; it applies to any
question set. Each sample draws its own values, seeded by the format name and the sample id, so a
rerun or another model is asked exactly the same prompts.

The judge is shown the question as asked (format included), as upstream did: a five-word answer is
coherent under "Answer with 5 words", not under the bare question.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import jinja2
from inspect_ai.dataset import Sample
from inspect_ai.model import ChatMessage, ChatMessageSystem, ChatMessageUser

from emeval.inputs.prompt_files import compiled, load_prompt_file, shipped_names
from emeval.benchmarks.questions import apply_trigger

FORMAT_DIR = "numbers"
NONE = "none"

@dataclass(frozen=True)
class AnswerFormat:
    name: str
    source: str
    sha256: str
    text: str

    def render(self, question: str, sample_id: str | int) -> str:
        seed = int.from_bytes(hashlib.sha256(f"{self.name}:{sample_id}".encode()).digest()[:8], "big")
        rng = random.Random(seed)

        def randint(low: int, high: int) -> int:
            return rng.randint(int(low), int(high))

        def random_numbers(n: int, low: int, high: int) -> list[int]:
            return [rng.randint(int(low), int(high)) for _ in range(int(n))]

        try:
            text = compiled(self.text).render(question=question, randint=randint, random_numbers=random_numbers)
        except jinja2.TemplateError as ex:
            raise ValueError(f"answer format {self.source}: {ex}") from ex
        if question not in text:
            raise ValueError(f"answer format {self.source}: the rendered prompt must contain {{{{ question }}}}")
        return text


def format_names() -> list[str]:
    """``none`` and the shipped formats (``prompts/numbers/<name>.j2``)."""
    return [NONE, *shipped_names(FORMAT_DIR)]


def load_format(spec: str | None) -> AnswerFormat | None:
    """A shipped format by name, a ``.j2`` file by path, or None for ``none``."""
    if spec is None or spec == NONE:
        return None
    try:
        found = load_prompt_file(FORMAT_DIR, spec, "answer_format")
    except ValueError:
        raise ValueError(f"-T answer_format={spec!r}: expected one of {', '.join(format_names())} or a .j2 file") from None
    return AnswerFormat(found.name, found.source, found.sha256, found.text)


def apply_answer_format(samples: Sequence[Sample], spec: str | None) -> list[Sample]:
    """The samples of ``build_samples`` with each question asked in the format (unchanged for none).

    ``metadata["question"]`` becomes the question as asked (what the judge sees); the bare
    question stays in ``metadata["original_question"]``. A trigger still comes first.
    """
    fmt = load_format(spec)
    if fmt is None:
        return list(samples)
    out = []
    for sample in samples:
        meta = dict(sample.metadata or {})
        asked = fmt.render(meta["question"], sample.id if sample.id is not None else "")
        messages: list[ChatMessage] = [ChatMessageSystem(content=meta["system"])] if meta.get("system") else []
        messages.append(ChatMessageUser(content=apply_trigger(asked, meta.get("trigger"))))
        meta.update(original_question=meta["question"], question=asked, answer_format=fmt.name)
        out.append(sample.model_copy(update={"input": messages, "metadata": meta}))
    return out


def format_metadata(spec: str | None) -> dict[str, str | None]:
    """What the eval header records about the format."""
    fmt = load_format(spec)
    if fmt is None:
        return {"answer_format": NONE}
    return {"answer_format": fmt.name, "answer_format_source": fmt.source, "answer_format_sha256": fmt.sha256}
