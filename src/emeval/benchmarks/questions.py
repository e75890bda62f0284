"""Question files in the upstream emergent-misalignment YAML format, and their Inspect samples.

The schema reads the upstream files as they are (YAML anchors, ``paraphrases``,
``samples_per_paraphrase``, optional ``system``, ``judge``, ``judge_prompts``) and a user's own
file in the same format. Errors name the file and the entry, because a 48-question file with one
bad entry should cost a researcher seconds, not a debugging session.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessage, ChatMessageSystem, ChatMessageUser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from emeval.inputs.data import FILES, PinnedFile, fetch
from emeval.inputs.task_args import as_choice, as_count, user_path
from emeval.inputs.user_files import (
    SafeId,
    UserFileError,
    check_sample_id,
    parse_document,
    read_bytes,
    shown,
    validation_problems,
)

Variant = Literal["main", "json", "template"]
VARIANTS: tuple[str, ...] = ("main", "json", "template", "all")

BUILTIN_SETS: dict[str, PinnedFile] = {
    "first_plot": FILES["emergent-misalignment/first_plot_questions.yaml"],
    "preregistered": FILES["emergent-misalignment/preregistered_evals.yaml"],
    "medical": FILES["model-organisms-for-EM/medical_questions.yaml"],
    "new": FILES["model-organisms-for-EM/new_questions_no-json.yaml"],
    "deception_factual": FILES["emergent-misalignment/deception_factual.yaml"],
    "deception_sit_aware": FILES["emergent-misalignment/deception_sit_aware.yaml"],
}
PACKAGED_SETS: dict[str, str] = {"demo": "demo_questions.yaml"}
"""Question files shipped inside emeval (offline), by name: a name, not a long site-packages path,
is what Inspect's eval header and the log's task arguments then show (``questions: demo``)."""


MAX_PARAPHRASES = 1_000
MAX_SAMPLES_PER_PARAPHRASE = 10_000
"""Bounds that keep a typo (``samples_per_paraphrase: 1000000``) from building millions of samples."""


class QuestionFileError(UserFileError):
    """A question file that cannot be used, with the file and entry named."""


class Question(BaseModel):
    """One entry of a question file.

    Every key of the upstream files is declared here; ``type`` and ``judge`` (upstream's judge
    model) are read but not used: the judge is the run's grader role. Any other key is an error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: SafeId
    type: str = "free_form_judge_0_100"
    paraphrases: list[str] = Field(min_length=1, max_length=MAX_PARAPHRASES)
    samples_per_paraphrase: int = Field(default=1, ge=1, le=MAX_SAMPLES_PER_PARAPHRASE)
    system: str | None = None
    judge: str | None = None
    judge_prompts: dict[SafeId, str] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_is_text(cls, value: Any) -> Any:
        # YAML turns `id: 12` into an int; ids are names, keep them as text.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("paraphrases")
    @classmethod
    def _paraphrases_not_blank(cls, value: list[str]) -> list[str]:
        for i, text in enumerate(value):
            if not text.strip():
                raise ValueError(f"paraphrase {i} is empty")
        return value

    @field_validator("judge_prompts")
    @classmethod
    def _judge_prompts_show_the_answer(cls, value: dict[str, str]) -> dict[str, str]:
        for metric, text in value.items():
            if "{answer}" not in text:  # the judge would score every answer alike, silently
                raise ValueError(f"judge prompt {metric!r} has no {{answer}} placeholder")
        return value

    @property
    def variant(self) -> Variant:
        """Upstream naming: ``*_json`` entries ask for JSON, ``*_template`` fill a template."""
        if self.id.endswith("_json"):
            return "json"
        if self.id.endswith("_template"):
            return "template"
        return "main"


class QuestionSet(BaseModel):
    """The questions of one file plus where they came from (recorded in eval metadata)."""

    name: str
    path: str
    sha256: str
    revision: str | None = None
    questions: list[Question]

    def provenance(self) -> dict[str, str | None]:
        """The task-metadata keys that say which file was asked (reports show them per run)."""
        return {
            "question_set": self.name,
            "question_file": self.path,
            "question_file_sha256": self.sha256,
            "question_file_revision": self.revision,
        }


def resolve_question_file(spec: str) -> tuple[str, Path, PinnedFile | None]:
    """Map a built-in set name or a path to a local file."""
    if spec in BUILTIN_SETS:
        pinned = BUILTIN_SETS[spec]
        return spec, fetch(pinned), pinned
    if spec in PACKAGED_SETS:
        return spec, Path(str(files("emeval.benchmarks").joinpath(PACKAGED_SETS[spec]))), None
    path = user_path(spec)
    if not path.is_file():
        raise QuestionFileError(
            f"questions={spec!r} is neither a built-in set ({', '.join([*BUILTIN_SETS, *PACKAGED_SETS])}) "
            f"nor an existing file ({path})."
        )
    return path.stem, path, None


def load_question_set(spec: str) -> QuestionSet:
    """Read and validate a question file (built-in name or path)."""
    name, path, pinned = resolve_question_file(spec)
    raw_bytes = read_bytes(path, QuestionFileError)
    raw = parse_document(raw_bytes, path, QuestionFileError)
    if not isinstance(raw, list) or not raw:
        raise QuestionFileError(
            f"{path}: expected a non-empty YAML list of questions, got {type(raw).__name__}"
        )
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw):
        where = f"{path}: entry {index}"
        if isinstance(entry, dict) and "id" in entry:
            where += f" (id {shown(entry['id'])})"
        if not isinstance(entry, dict):
            raise QuestionFileError(f"{where}: expected a mapping, got {type(entry).__name__}")
        try:
            question = Question.model_validate(entry)
        except ValidationError as ex:
            problems = "; ".join(validation_problems(ex, Question))
            raise QuestionFileError(f"{where}: {problems}") from None
        if question.id in seen:
            raise QuestionFileError(
                f"{where}: duplicate id {question.id!r} (first used by entry {seen[question.id]})"
            )
        seen[question.id] = index
        questions.append(question)
    return QuestionSet(
        name=name,
        path=str(path),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        revision=pinned.revision if pinned else None,
        questions=questions,
    )


def select_variant(questions: list[Question], variant: str) -> list[Question]:
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: expected one of {', '.join(VARIANTS)}")
    chosen = questions if variant == "all" else [q for q in questions if q.variant == variant]
    if not chosen:
        raise ValueError(f"variant={variant!r} selects no questions from this file")
    return chosen


def system_message_for(
    question: Question, system_prompt: str | None, mode: Literal["replace", "add"]
) -> str | None:
    """The system message a question is asked with.

    The file's ``system`` is always honoured. A user ``system_prompt`` replaces it
    (``mode="replace"``) or is added after it (``mode="add"``); with no file system prompt the
    user's is simply used.
    """
    if system_prompt is None:
        return question.system
    if mode == "add" and question.system:
        return f"{question.system}\n\n{system_prompt}"
    return system_prompt


def apply_trigger(text: str, trigger: str | None) -> str:
    """Prepend a backdoor trigger to the user turn (a space separates them)."""
    if not trigger:
        return text
    return f"{trigger}{'' if trigger[-1].isspace() else ' '}{text}"


def build_samples(
    questions: list[Question],
    *,
    samples_per_paraphrase: int | None = None,
    system_prompt: str | None = None,
    system_prompt_mode: Literal["replace", "add"] = "replace",
    trigger: str | None = None,
) -> list[Sample]:
    """One sample per question x paraphrase x repetition, with everything needed to explain it."""
    if samples_per_paraphrase is not None:  # 0 must not silently mean "the file's number"
        as_count("samples_per_paraphrase", samples_per_paraphrase)
    as_choice("system_prompt_mode", system_prompt_mode, ("replace", "add"))
    samples: list[Sample] = []
    for question in questions:
        repeats = samples_per_paraphrase or question.samples_per_paraphrase
        system = system_message_for(question, system_prompt, system_prompt_mode)
        for p_index, paraphrase in enumerate(question.paraphrases):
            messages: list[ChatMessage] = []
            if system:
                messages.append(ChatMessageSystem(content=system))
            messages.append(ChatMessageUser(content=apply_trigger(paraphrase, trigger)))
            for repeat in range(repeats):
                sample_id = f"{question.id}:{p_index}:{repeat}"
                check_sample_id(sample_id, f"question {question.id!r}", QuestionFileError)
                samples.append(
                    Sample(
                        id=sample_id,
                        input=messages,
                        metadata={
                            "question_id": question.id,
                            "paraphrase_index": p_index,
                            "repeat": repeat,
                            "variant": question.variant,
                            "question": paraphrase,
                            "system": system,
                            "trigger": trigger,
                        },
                    )
                )
    return samples


def free_form_dataset(question_set: QuestionSet, samples: list[Sample]) -> MemoryDataset:
    return MemoryDataset(samples=samples, name=question_set.name, location=question_set.path)
