"""Reading the files users hand emeval: one strict path for question, probe, completion, nightly and sweep files.

Why: a researcher's typo must stop the run before any model is called, with the file, the line and
the key named. PyYAML and ``json`` quietly keep the last of two equal keys, and a pydantic model
that ignores unknown keys runs ``samples_per_paraphrse: 100`` as one sample per paraphrase. So:

- every YAML/JSON user file is parsed by ``load_document``, each JSON Lines record by
  ``load_json_line``: a key written twice in one mapping is an error naming file, line and key;
- files are size-bounded before parsing (``MAX_FILE_BYTES``; ``MAX_LINES_FILE_BYTES`` for the
  line-by-line JSONL/CSV files) and YAML alias expansion is bounded (``MAX_NODES``), so a huge or
  "billion laughs" file is a clear error, not an exhausted machine;
- schemas use ``extra="forbid"``, and ``validation_problems`` turns an unknown key into
  ``unknown key 'samples_per_paraphrse' (did you mean 'samples_per_paraphrase'?)``;
- ids that become sample ids, metadata keys and entry names inside the ``.eval`` zip are
  ``SafeId``: at most ``MAX_ID_LENGTH`` characters of ``ID_CHARACTERS``, never ``..``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import AfterValidator, BaseModel, ValidationError

MAX_FILE_BYTES = 16 * 1024 * 1024
"""YAML/JSON user files are read whole; the largest upstream one is 22 kB."""
MAX_LINES_FILE_BYTES = 512 * 1024 * 1024
"""JSON Lines and CSV files (completions, labels) may be large, but not unbounded."""
MAX_NODES = 1_000_000
"""Values in a parsed YAML file, each use of an alias counted again (the way validation sees them)."""
MAX_ID_LENGTH = 128
"""Question, probe and label ids: long enough for any descriptive name, short enough for a zip entry name."""
MAX_SAMPLE_ID_LENGTH = MAX_ID_LENGTH + 32
"""Sample ids built from an id plus indices (``<id>:<paraphrase>:<repeat>``, ``<set>:<id prefix>``)."""
ID_CHARACTERS = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
"""ASCII letters and digits, then also ``_ . -``: no path separator, no ``:`` (the sample id separator),
no whitespace or control character, no look-alike from another script. Every upstream id fits."""
_ID = re.compile(ID_CHARACTERS)


class UserFileError(ValueError):
    """A user file that cannot be used; the message starts with the file."""


def read_bytes(
    path: Path | str, error: type[ValueError] = UserFileError, limit: int = MAX_FILE_BYTES, what: str = "file"
) -> bytes:
    """The file's bytes, refusing (before reading) a file over ``limit``; ``what`` names the file's kind.
    ``path`` may be an fsspec URL (``s3://...``: a sweep kept in a log store), read through fsspec."""
    try:
        if isinstance(path, str) and "://" in path and not path.startswith("file://"):
            import fsspec

            fs, inner = fsspec.core.url_to_fs(path)
            size, read = fs.size(inner), lambda: fs.cat_file(inner)
        else:
            local = Path(str(path).removeprefix("file://"))
            size, read = local.stat().st_size, local.read_bytes
        if size > limit:
            raise error(f"{path}: {size:,} bytes, more than the {limit:,} a {what} may hold")
        return read()
    except OSError as ex:
        raise error(f"{path}: cannot read the {what} ({ex.strerror or ex})") from None


class _DuplicateKey(yaml.YAMLError):
    """A mapping key written twice (raised by the loader, reported with the file)."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key written twice in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise _DuplicateKey(f"line {line}: key {shown(key)} written twice in one mapping (first on line {first})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _duplicate_pairs(where: str, error: type[ValueError]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise error(f"{where}: key {shown(key)} written twice in one object")
            result[key] = value
        return result

    return hook


def count_nodes(data: Any, limit: int = MAX_NODES) -> int:
    """Values in ``data`` as validation walks them (a shared alias counts at each use); errors past ``limit``
    or on a structure that contains itself (``&a [*a]``)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, (list, dict)):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ValueError("a YAML alias refers to a structure that contains it")
        active.add(key)
        children = value.values() if isinstance(value, dict) else value
        total = 1
        for child in children:
            total += size(child)
            if total > limit:
                raise ValueError(f"more than {limit:,} values once its aliases are expanded")
        active.discard(key)
        sizes[key] = total
        return total

    return size(data)


def load_document(path: Path | str, error: type[ValueError] = UserFileError, what: str = "file") -> Any:
    """Parse a YAML or JSON user file (``.json``: JSON, else YAML): bounded size and expansion, UTF-8,
    no key written twice."""
    return parse_document(read_bytes(path, error, what=what), path, error)


def parse_document(raw: bytes, path: Path | str, error: type[ValueError] = UserFileError) -> Any:
    """``load_document`` for bytes already read (callers that also hash them)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as ex:
        raise error(f"{path}: not UTF-8 text ({ex})") from None
    if str(path).lower().endswith(".json"):  # JSON's own parser: YAML 1.1 reads 1e-05 as text
        return load_json_line(text, str(path), error)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as ex:
        raise error(f"{path}: {ex}") from None
    except yaml.YAMLError as ex:
        raise error(f"{path}: not valid YAML: {ex}") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply to read") from None
    try:
        count_nodes(data)
    except (ValueError, RecursionError) as ex:
        reason = str(ex) if isinstance(ex, ValueError) else "nested too deeply to read"
        raise error(f"{path}: {reason}") from None
    return data


def load_json_line(text: str, where: str, error: type[ValueError] = UserFileError) -> Any:
    """One JSON document (a JSON Lines record, a ``.json`` file); a key written twice in one object is an
    error naming ``where``."""
    try:
        return json.loads(text, object_pairs_hook=_duplicate_pairs(where, error))
    except json.JSONDecodeError as ex:
        raise error(f"{where}: not JSON ({ex})") from None
    except RecursionError:
        raise error(f"{where}: nested too deeply to read") from None


# -- ids ---------------------------------------------------------------------------------------------


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to about ``limit`` characters: a 70,000-character id is named, not printed."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value)):,} characters)"


def check_id(value: str) -> str:
    """A safe id: 1 to ``MAX_ID_LENGTH`` characters of ``ID_CHARACTERS``, no ``..``."""
    if not value:
        raise ValueError("an id cannot be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"id of {len(value):,} characters; at most {MAX_ID_LENGTH} allowed")
    bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-"))})
    if bad:
        chars = ", ".join(repr(c) if c.isprintable() else f"U+{ord(c):04X}" for c in bad[:5])
        raise ValueError(f"id {shown(value)} holds {chars}: ids are ASCII letters, digits, '_', '.' and '-'")
    if not _ID.fullmatch(value):
        raise ValueError(f"id {shown(value)} must start with a letter or digit")
    if ".." in value:
        raise ValueError(f"id {shown(value)} holds '..'")
    return value


SafeId = Annotated[str, AfterValidator(check_id)]
"""A pydantic field type for ids (see ``check_id``)."""


def check_sample_id(sample_id: str, where: str, error: type[ValueError] = UserFileError) -> str:
    """A sample id built from a file's ids stays short enough for Inspect's log (zip entry names)."""
    if len(sample_id) > MAX_SAMPLE_ID_LENGTH:
        raise error(f"{where}: sample id of {len(sample_id):,} characters; at most {MAX_SAMPLE_ID_LENGTH} allowed")
    return sample_id


# -- validation messages -----------------------------------------------------------------------------


def _fields(model: type) -> dict[str, Any]:
    """key -> annotation of a pydantic model or a dataclass (what pydantic validates a mapping against)."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {field.alias or name: field.annotation for name, field in model.model_fields.items()}
    hints = get_type_hints(model, include_extras=True)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(model)}


def known_keys(model: type) -> list[str]:
    """The keys a model accepts (field names and aliases)."""
    return list(_fields(model))


def _models_in(annotation: Any) -> list[type]:
    """The models (pydantic or dataclass) a field's annotation may hold (through list, dict, Optional, Union)."""
    if isinstance(annotation, type) and (issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)):
        return [annotation]
    origin = get_origin(annotation)
    if origin is None:
        return []
    args = get_args(annotation)
    if origin is Annotated:
        args = args[:1]
    if origin is dict:
        args = args[1:]
    return [m for arg in args for m in _models_in(arg)] if origin in (list, dict, tuple, Union, types.UnionType, Annotated) else []


def _model_at(model: type, loc: Iterable[Any]) -> list[type]:
    """The models that may sit at ``loc`` below ``model`` (list indexes and dict keys skipped)."""
    current: list[type] = [model]
    for part in loc:
        if not isinstance(part, str):
            continue
        step = []
        for m in current:
            fields = _fields(m)
            if part in fields:
                step.extend(_models_in(fields[part]))
        if step:
            current = step
        # else: a dict key (e.g. judge_prompts.<metric>) or a union tag; stay at the models found so far
    return current


def closest(key: str, known: Iterable[str]) -> str | None:
    """The known key nearest to ``key`` (difflib), if any is near enough to be the intended one."""
    matches = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _where(loc: Iterable[Any]) -> str:
    return ".".join(str(p) if len(str(p)) <= 40 else shown(p) for p in loc)


def validation_problems(ex: ValidationError, model: type) -> list[str]:
    """``location: message`` per error, unknown keys first; an unknown key names the closest key the
    schema knows at that place (``did you mean 'samples_per_paraphrase'?``)."""
    unknown, other = [], []
    for err in ex.errors():
        loc = tuple(err["loc"])
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument") and loc:
            key, parent = loc[-1], _where(loc[:-1])
            known = sorted({k for m in _model_at(model, loc[:-1]) for k in known_keys(m)})
            hint = closest(str(key), known)
            text = f"unknown key {shown(key)}" + (
                f" (did you mean {hint!r}?)" if hint else f" (known keys: {', '.join(known)})"
            )
            unknown.append(f"{parent}: {text}" if parent else text)
        else:
            where = _where(loc)
            ctx = err.get("ctx") or {}
            message = str(ctx["error"]) if err["type"] == "value_error" and "error" in ctx else err["msg"]
            other.append(f"{where}: {message}" if where else message)
    return unknown + other
