"""Model-facing prompt templates in ``prompts/<folder>/``: found by shipped name or by path, and hashed.

Why one place: every templated eval option (``-T template=``, ``-T answer_format=``) takes either a
shipped template's name or the user's own ``.j2`` file, and records which text it used by sha256.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import jinja2

PLAIN_TEXT = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
"""The environment of every prompt template: plain text, not HTML; a misspelt variable is an error."""


@lru_cache(maxsize=256)
def compiled(text: str, env: jinja2.Environment = PLAIN_TEXT) -> jinja2.Template:
    """A template compiled once: compiling costs about a millisecond, and a run renders thousands.
    ``env``: an environment with extra filters (the coding templates'); it is part of the key."""
    return env.from_string(text)


@dataclass(frozen=True)
class PromptFile:
    name: str
    source: str
    sha256: str
    text: str


def shipped_names(folder: str) -> list[str]:
    """The templates shipped in ``prompts/<folder>/``, by name."""
    root = files("emeval.prompts").joinpath(folder)
    return sorted(p.name[:-3] for p in root.iterdir() if p.name.endswith(".j2"))


def load_prompt_file(folder: str, spec: object, parameter: str) -> PromptFile:
    """A shipped template by name, or a ``.j2`` file by path; a clear error naming ``-T parameter`` otherwise."""
    expected = f"-T {parameter}={spec!r}: expected one of {', '.join(shipped_names(folder))} or a .j2 file"
    if not isinstance(spec, str) or not spec:
        raise ValueError(expected)
    resource = files("emeval.prompts").joinpath(folder, f"{spec}.j2")
    if re.fullmatch(r"[A-Za-z0-9_]+", spec) and resource.is_file():
        text, source = resource.read_text(encoding="utf-8"), f"prompts/{folder}/{spec}.j2"
    elif Path(spec).expanduser().is_file():
        path = Path(spec).expanduser()
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        raise ValueError(expected)
    return PromptFile(Path(spec).stem, source, hashlib.sha256(text.encode()).hexdigest(), text)
