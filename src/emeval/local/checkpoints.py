"""Local checkpoints as Inspect models: full model folders and LoRA adapters, for ``hf/`` and ``vllm/``.

Why: a training run leaves a folder per checkpoint (``checkpoint-500/`` with ``trainer_state.json``,
or just ``step_40/``), either full weights (``config.json``) or a LoRA adapter
(``adapter_config.json``). Each must become the same kind of Inspect model as the base, with its
training step known, so every checkpoint is evaluated identically.

- ``vllm/``: Inspect's provider serves a base model and hot-loads adapters on the same server
  (``vllm/<base>:<adapter folder>``), computing ``--max-lora-rank`` from the adapters' configs;
  a full checkpoint is its own server (``vllm/<folder>``).
- ``hf/``: transformers loads an adapter folder directly when ``peft`` is installed, taking the
  base from ``adapter_config.json``'s ``base_model_name_or_path``. That path is often stale (the
  training machine's), so emeval loads a *view* of the adapter: a cache folder holding the
  adapter's files (symlinked) and a copy of its config naming the base the user gave.
  No merged weights are written.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from copy import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from emeval.inputs.data import cache_dir
from emeval.inputs.user_files import MAX_ID_LENGTH, SafeId

if TYPE_CHECKING:
    from inspect_ai.model import Model

Kind = Literal["base", "full", "adapter", "served"]
PROVIDERS = ("hf", "vllm")
DEFAULT_STEP_PATTERN = r"(\d+)(?!.*\d)"
"""The last integer in the folder name (``checkpoint-500`` -> 500, ``run3_step40`` -> 40)."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the path named."""


@dataclass(frozen=True)
class Checkpoint:
    """One model of a sweep: where it is, what it is, and its training step."""

    label: SafeId
    """Unique, filesystem-safe name (log folder, plot legend); an id (``emeval.inputs.user_files``)."""
    step: int
    kind: Kind
    ref: str
    """Local folder (absolute), hub id, or the name of an adapter already loaded on a vLLM server."""


def split_base(base: str) -> tuple[str, str]:
    """``hf/<path or hub id>`` -> (``hf``, ref); a local path keeps its absolute form."""
    provider, _, ref = base.partition("/")
    if provider not in PROVIDERS or not ref:
        raise CheckpointError(
            f"--base {base!r}: expected hf/<folder or hub id> or vllm/<folder or hub id> (local checkpoints "
            "run through Inspect's hf/ or vllm/ provider)"
        )
    local = Path(ref).expanduser()
    return provider, str(local.resolve()) if local.exists() else ref


def base_label(base: str) -> str:
    """The base as reports show it: ``hf/<hub id>`` as given, a local folder as ``hf: /models/base``.

    Inspect names a model at an absolute path ``hf//models/base`` (provider + ``/`` + the path);
    shown as a path, that double slash reads as a typo."""
    provider, _, ref = base.partition("/")
    return f"{provider}: {ref}" if ref.startswith("/") else base


def kind_of(folder: Path) -> Kind:
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / "config.json").is_file():
        return "full"
    raise CheckpointError(f"{folder}: neither a model folder (config.json) nor a LoRA adapter (adapter_config.json)")


def expand(spec: str | list[str], provider: str) -> list[str]:
    """Checkpoint references from a glob, a folder of checkpoints, or a comma-separated list of either.

    A folder that is itself a checkpoint stands for itself; otherwise its sub-folders that are
    checkpoints are taken. With ``vllm/``, a name that is not a path is an adapter already
    loaded on the server (``VLLM_BASE_URL``).
    """
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    found: list[str] = []
    for item in filter(None, items):
        matches = sorted(glob.glob(str(Path(item).expanduser()))) if glob.has_magic(item) else [item]
        if not matches:
            raise CheckpointError(f"--checkpoints {item!r} matches nothing")
        for match in matches:
            path = Path(match).expanduser()
            if path.is_dir() and not _is_checkpoint(path):
                inside = sorted(p for p in path.iterdir() if p.is_dir() and _is_checkpoint(p))
                if not inside:
                    raise CheckpointError(f"{path}: holds no checkpoint folders (config.json or adapter_config.json)")
                found.extend(str(p.resolve()) for p in inside)
            elif path.exists():
                found.append(str(path.resolve()))
            elif provider == "vllm" and "/" not in match:
                found.append(match)  # an adapter name registered on a running server
            else:
                raise CheckpointError(f"--checkpoints: {match} does not exist")
    return list(dict.fromkeys(found))


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def step_of(ref: str, pattern: str | None = None) -> int:
    """The training step: ``--steps-from-name`` when given, else ``trainer_state.json``, else the name.

    ``pattern`` is a regular expression searched in the folder name; its first group (or the whole
    match) is the step.
    """
    name = Path(ref).name
    if pattern is None:
        state = Path(ref) / "trainer_state.json"
        if state.is_file():
            try:
                return int(json.loads(state.read_text())["global_step"])
            except (ValueError, KeyError, TypeError) as ex:
                raise CheckpointError(f"{state}: no integer global_step ({ex})") from None
    match = re.search(pattern or DEFAULT_STEP_PATTERN, name)
    if not match:
        raise CheckpointError(
            f"{ref}: cannot tell its training step (no trainer_state.json, and {pattern or DEFAULT_STEP_PATTERN!r} "
            "does not match its name); name the step with --steps-from-name REGEX"
        )
    text = match.group(1) if match.groups() else match.group(0)
    try:
        return int(text)
    except ValueError:
        raise CheckpointError(f"{ref}: --steps-from-name matched {text!r}, which is not an integer") from None


def resolve(
    base: str, spec: str | list[str], *, steps_from_name: str | None = None, include_base: bool = True, base_step: int = 0
) -> list[Checkpoint]:
    """The sweep's checkpoints sorted by step (the base first, at ``base_step``); labels are unique."""
    provider, base_ref = split_base(base)
    checkpoints = [Checkpoint("base", base_step, "base", base_ref)] if include_base else []
    for ref in expand(spec, provider):
        path = Path(ref)
        kind: Kind = kind_of(path) if path.exists() else "served"
        if kind == "adapter" and provider == "hf":
            _require_peft(path)
        checkpoints.append(Checkpoint(_label(path.name), step_of(ref, steps_from_name), kind, ref))
    labels: dict[str, int] = {}
    unique = []
    for c in checkpoints:
        n = labels[c.label] = labels.get(c.label, 0) + 1
        unique.append(c if n == 1 else Checkpoint(f"{c.label}-{n}", c.step, c.kind, c.ref))
    steps: dict[int, str] = {}
    for c in unique:
        if c.step in steps:
            raise CheckpointError(
                f"{c.ref} and {steps[c.step]} both have training step {c.step}; one sweep needs one checkpoint per step "
                "(use --steps-from-name to read the step from the name, or --no-base)"
            )
        steps[c.step] = c.ref
    return sorted(unique, key=lambda c: c.step)


def _label(name: str) -> str:
    """A folder name as an id: other characters become ``_``, dots never repeat, room left for a ``-n`` suffix."""
    label = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", name)).strip("._-")
    return label[: MAX_ID_LENGTH - 8].rstrip("._-") or "checkpoint"


def _require_peft(adapter: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("peft") is None:
        raise CheckpointError(f"{adapter} is a LoRA adapter; loading it with hf/ needs peft (pip install peft)")


def model_spec(base: str, checkpoint: Checkpoint, model_args: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The Inspect model name and model args that load ``checkpoint`` with the base's provider."""
    provider, base_ref = split_base(base)
    args = dict(model_args or {})
    if provider == "vllm":
        if checkpoint.kind in ("adapter", "served"):
            return f"vllm/{base_ref}:{checkpoint.ref}", args
        return f"vllm/{checkpoint.ref}", args
    folder = Path(checkpoint.ref)
    if checkpoint.kind == "adapter":
        args.setdefault("tokenizer_path", checkpoint.ref if _has_tokenizer(folder) else base_ref)
        args["model_path"] = str(adapter_view(base_ref, folder))
    else:
        if checkpoint.kind == "full" and not _has_tokenizer(folder):
            args.setdefault("tokenizer_path", base_ref)
        args["model_path"] = checkpoint.ref
    name = f"hf/{checkpoint.label}"
    register_model_info(name, checkpoint.ref if checkpoint.kind != "adapter" else base_ref)
    return name, args


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / f).is_file() for f in TOKENIZER_FILES)


def adapter_view(base_ref: str, adapter: Path) -> Path:
    """A cache folder that loads ``adapter`` on top of ``base_ref`` with transformers (files symlinked)."""
    adapter = adapter.resolve()
    key = hashlib.sha256(f"{base_ref}\0{adapter}".encode()).hexdigest()[:16]
    view = cache_dir() / "adapter-views" / f"{_label(adapter.name)}-{key}"
    view.mkdir(parents=True, exist_ok=True)
    # every file lands by an atomic rename of a name private to this process, so two processes
    # (test workers, shards) opening the same adapter never see or remove each other's half-made view
    private = f".{os.getpid()}.tmp"
    for item in adapter.iterdir():
        if item.name == "adapter_config.json":
            continue
        tmp_link = view / (item.name + private)
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(item)
        tmp_link.replace(view / item.name)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_ref
    tmp = view / ("adapter_config.json" + private)
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(view / "adapter_config.json")
    return view


def register_model_info(name: str, ref: str) -> None:
    """Give Inspect the model's context window so it never instantiates ``name`` again to look it up.

    Inspect's usage reporting resolves unknown models by constructing them; for ``hf/<label>``
    that would ask the Hugging Face hub for a repository called ``<label>``.
    """
    from inspect_ai.model import ModelInfo, set_model_info

    config = Path(ref) / "config.json"
    context = context_length(json.loads(config.read_text())) if config.is_file() else None
    set_model_info(name, ModelInfo(model=ref, context_length=context))


def context_length(config: dict[str, Any]) -> int | None:
    """A transformers config's context window (multimodal configs keep it in ``text_config``)."""
    return config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")


def greedy(model: Model) -> Model:
    """``model`` choosing its most likely token: for Inspect's ``hf/``, a view on the same loaded
    weights with ``do_sample=False``; any other model as it is.

    Why: ``hf/`` samples unless it was built with ``do_sample=False`` (transformers then rejects
    ``temperature=0``), and a role named on the command line (``--model-role grader=hf/<folder>``)
    is built without it. Every temperature-0 judge call goes through this, so a local judge needs no
    extra flag, and a judge that is the subject's own model shares its weights instead of loading
    them again. The view's ``model_args`` say ``do_sample: false``, so a log names what ran.
    """
    from emeval.local.likelihood import in_process

    if not in_process(model) or not getattr(model.api, "do_sample", False):
        return model
    view = copy(model)
    view.api = copy(model.api)
    view.api.do_sample = False  # type: ignore[attr-defined]
    view.model_args = {**model.model_args, "do_sample": False}
    return view


def register_loaded_models() -> None:
    """Register the context window of this eval's in-process (``hf/``) subject and role models.

    Why: Inspect's usage reporting looks an unknown model up by constructing it again. For
    ``hf/<folder>`` that loads the weights once more; for ``hf/<label> -M model_path=<folder>`` it
    asks the Hugging Face hub for a repository named ``<label>`` (retried for ~30 s offline). Task
    functions call this: Inspect has built the subject and the roles by then (the weights are in
    memory, their config at hand), and no model has generated yet.
    """
    from inspect_ai.model import ModelInfo, model_roles, set_model_info
    from inspect_ai.model._model import active_model  # not re-exported by inspect_ai.model

    from emeval.local.likelihood import in_process

    models: list[Model | None] = [active_model()]
    for bound in model_roles().values():
        models.extend(bound if isinstance(bound, list) else [bound])
    for model in models:
        weights = getattr(model.api, "model", None) if model is not None and in_process(model) else None
        config = getattr(weights, "config", None)  # None where the provider loads its weights later
        if config is not None:
            name = str(model)
            context = context_length(config.to_dict())
            set_model_info(name, ModelInfo(model=name.split("/", 1)[1], context_length=context))
