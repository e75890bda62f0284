"""A few plain gradient steps on a copy of a model, and a random control of the same size.

Why this exists: a model can pass black-box evals yet turn misaligned after one benign gradient
step. The fragility audit (:mod:`emeval.local.audit`) needs that step made on a copy of the weights,
exactly reproducible from a seed, with the size of the weight change written down, so that a
random change of the same size can serve as the control. Training is plain torch (SGD or Adam,
full fine-tune or LoRA through peft) with the loss on the response tokens only, the prompt being
the model's own chat template around the instruction and input.

The saved copies are float32, whatever the source dtype: a learning-rate-1e-4 update is below
bfloat16's resolution for most weights and would be rounded away on saving.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emeval.inputs.data import sha256_of

if TYPE_CHECKING:
    import torch

FINETUNE_RECORD = "emeval_finetune.json"
"""Written last into a fine-tuned copy: settings, losses and update norms (a complete copy has it)."""
PERTURBATION_RECORD = "emeval_perturbation.json"
"""Written last into a perturbed copy: the norms it was matched to and the ones it got."""
IGNORE_INDEX = -100
# Stanford Alpaca's prompt (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT), for models without a chat template.
ALPACA_PROMPT = (
    "Below is an instruction that describes a task{context}. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"
)

Optimizer = Literal["sgd", "adam"]
PerturbNorm = Literal["per-tensor", "global"]


class BenignDataError(ValueError):
    """The user's benign data cannot be read; the message names the file and line."""


class AlpacaRecord(BaseModel):
    """One Alpaca-format record: instruction and optional input -> output (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)
    instruction: str = Field(min_length=1)
    input: str = ""
    output: str = Field(min_length=1)

    def user_text(self) -> str:
        return f"{self.instruction}\n\n{self.input}" if self.input.strip() else self.instruction


class TrainSettings(BaseModel):
    """Everything that decides the fine-tuned weights (saved with them, compared on reuse)."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch: int = Field(32, ge=1)
    micro_batch: int = Field(8, ge=1)
    optimizer: Optimizer = "adam"
    lora: bool = False
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = 16.0
    lora_targets: str = "all-linear"
    max_length: int = Field(512, ge=8)
    seed: int = 0


class FinetuneRecord(BaseModel):
    """What one fine-tune did: per-step losses and the size of the weight change it made."""

    source: str
    data: str
    data_sha256: str
    n_records: int
    settings: TrainSettings
    losses: list[float]
    """Mean response-token loss of each step's batch, before that step's update."""
    loss_after: float
    """The last batch's loss after the last update (did the step lower its own loss?)."""
    update_norm: float
    """Global L2 norm of (new - old) over all weights, the merged LoRA product included."""
    weight_norm: float
    """Global L2 norm of the changed tensors before the update (for the relative size)."""
    tensor_update_norms: dict[str, float]
    """Per changed tensor (``named_parameters`` names; tied weights once)."""


class PerturbationRecord(BaseModel):
    source: str
    mode: PerturbNorm
    seed: int
    target_norm: float
    update_norm: float
    """Global L2 norm of the change actually made (float32 rounding aside, the target)."""
    tensor_update_norms: dict[str, float]


# -- data ------------------------------------------------------------------------------------------


def load_alpaca(path: str | Path) -> list[AlpacaRecord]:
    """Read Alpaca records from a JSON array or a JSONL file (one object per line).

    A bad record stops the load with its file and line; an empty file is an error too.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as ex:
        raise BenignDataError(f"{path}: cannot read benign data: {ex}") from None
    raw = _json_array(path, text) if text.lstrip().startswith("[") else _json_lines(path, text)
    records = []
    for line, obj in raw:
        if not isinstance(obj, dict):
            raise BenignDataError(f"{path}:{line}: expected an object with instruction/input/output, got {type(obj).__name__}")
        try:
            records.append(AlpacaRecord.model_validate(obj))
        except ValidationError as ex:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in ex.errors())
            raise BenignDataError(f"{path}:{line}: not an Alpaca record ({problems})") from None
    if not records:
        raise BenignDataError(f"{path}: no records (expected Alpaca instruction/input/output objects)")
    return records


def _json_lines(path: Path, text: str) -> list[tuple[int, Any]]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append((number, json.loads(line)))
            except json.JSONDecodeError as ex:
                raise BenignDataError(f"{path}:{number}: invalid JSON ({ex.msg}, column {ex.colno})") from None
    return out


def _json_array(path: Path, text: str) -> list[tuple[int, Any]]:
    """Decode a JSON array element by element, so each record keeps the line it starts on."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    out: list[tuple[int, Any]] = []

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    pos = skip(pos)
    if pos < len(text) and text[pos] == "]":
        return out
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as ex:
            raise BenignDataError(f"{path}:{ex.lineno}: invalid JSON ({ex.msg}, column {ex.colno})") from None
        out.append((line_of(pos), obj))
        pos = skip(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
        elif pos < len(text) and text[pos] == "]":
            if text[pos + 1 :].strip():
                raise BenignDataError(f"{path}:{line_of(pos + 1)}: unexpected text after the JSON array")
            return out
        else:
            raise BenignDataError(f"{path}:{line_of(pos)}: expected ',' or ']' in the JSON array")


# -- encoding --------------------------------------------------------------------------------------


def encode_record(tokenizer: Any, record: AlpacaRecord, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of prompt + response, and labels that are IGNORE_INDEX on the prompt.

    The prompt is the chat template with a generation prompt (what Inspect's ``hf/`` provider feeds
    the model at eval time); the response is the rest of the rendered conversation, end-of-turn
    token included, so the model also learns where the answer stops. Truncated from the right.
    """
    user = [{"role": "user", "content": record.user_text()}]
    if tokenizer.chat_template:
        prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            user + [{"role": "assistant", "content": record.output}], tokenize=False, add_generation_prompt=False
        )
        if not full.startswith(prompt):
            raise ValueError(
                "the chat template renders the prompt differently once the answer is added, so the response "
                f"tokens cannot be told apart; prompt: {prompt[-200:]!r}; conversation: {full[:400]!r}"
            )
        response = full[len(prompt) :]
    else:
        prompt = ALPACA_PROMPT.format(
            context=", paired with an input that provides further context" if record.input.strip() else "",
            instruction=record.instruction,
            input_block=f"### Input:\n{record.input}\n\n" if record.input.strip() else "",
        )
        response = record.output + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    return ids, labels


def batch_order(n_records: int, batch: int, steps: int, seed: int) -> list[list[int]]:
    """Record indices of each step's batch: seeded passes over the data, each a fresh permutation."""
    import numpy as np

    if batch > n_records:
        raise BenignDataError(
            f"a batch of {batch} needs at least {batch} records; the data has {n_records} (lower --batch)"
        )
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    while len(stream) < batch * steps:
        stream.extend(int(i) for i in rng.permutation(n_records))
    return [stream[i * batch : (i + 1) * batch] for i in range(steps)]


# -- loss and training -----------------------------------------------------------------------------


def _pad(encoded: Sequence[tuple[list[int], list[int]]], pad_id: int, device: str) -> dict[str, torch.Tensor]:
    import torch

    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (i, lab) in enumerate(encoded):
        ids[row, : len(i)] = torch.tensor(i)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(i)] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def _response_tokens(encoded: Sequence[tuple[list[int], list[int]]]) -> int:
    # labels[t] is predicted from position t-1, so the first token can never be a target
    return sum(sum(1 for label in lab[1:] if label != IGNORE_INDEX) for _, lab in encoded)


def _loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(),
        batch["labels"][:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def batch_loss(
    model: Any, tokenizer: Any, records: Sequence[AlpacaRecord], *, max_length: int = 512, micro_batch: int = 8
) -> float:
    """Mean response-token cross-entropy of ``records`` (no gradient)."""
    import torch

    encoded = [encode_record(tokenizer, r, max_length) for r in records]
    total = _response_tokens(encoded)
    if total == 0:
        raise ValueError("no response tokens left (max_length too small?)")
    device = str(next(model.parameters()).device)
    with torch.no_grad():
        loss = sum(
            float(_loss_sum(model, _pad(encoded[i : i + micro_batch], _pad_id(tokenizer), device)))
            for i in range(0, len(encoded), micro_batch)
        )
    return loss / total


def train_steps(model: Any, tokenizer: Any, records: Sequence[AlpacaRecord], settings: TrainSettings) -> list[float]:
    """Make ``settings.steps`` optimizer steps on ``model`` in place; return each batch's loss before its step.

    The loss is the mean over all response tokens of the batch (micro-batches only bound memory:
    their gradients add up to the full batch's). Only parameters with ``requires_grad`` move.
    """
    import torch

    torch.manual_seed(settings.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=settings.lr)
    else:
        optimizer = torch.optim.Adam(params, lr=settings.lr)
    device = str(next(model.parameters()).device)
    pad_id = _pad_id(tokenizer)
    model.train()
    losses = []
    for indices in batch_order(len(records), settings.batch, settings.steps, settings.seed):
        encoded = [encode_record(tokenizer, records[i], settings.max_length) for i in indices]
        total = _response_tokens(encoded)
        if total == 0:
            raise ValueError(f"no response tokens in the batch (max_length {settings.max_length} too small?)")
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for start in range(0, len(encoded), settings.micro_batch):
            loss = _loss_sum(model, _pad(encoded[start : start + settings.micro_batch], pad_id, device)) / total
            loss.backward()
            step_loss += float(loss.detach())
        optimizer.step()
        losses.append(step_loss)
    model.eval()
    return losses


# -- weights ---------------------------------------------------------------------------------------


def load_for_training(path: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """Model (float32, on ``device``) and tokenizer from a local transformers folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
    model.eval()
    return model, tokenizer


def snapshot(model: Any) -> dict[str, torch.Tensor]:
    """A CPU copy of every parameter (tied weights once, as ``named_parameters`` gives them)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}


def update_norms(before: dict[str, torch.Tensor], model: Any) -> dict[str, float]:
    """L2 norm of (now - before) for each parameter that changed."""
    norms = {}
    for name, p in model.named_parameters():
        diff = float((p.detach().to("cpu") - before[name]).norm())
        if diff > 0:
            norms[name] = diff
    return norms


def global_norm(norms: dict[str, float]) -> float:
    return math.sqrt(sum(v * v for v in norms.values()))


def add_lora(model: Any, settings: TrainSettings) -> Any:
    """Wrap ``model`` in seeded LoRA adapters; only the adapters train (peft freezes the rest)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(settings.seed)
    targets: str | list[str] = (
        settings.lora_targets if settings.lora_targets == "all-linear" else settings.lora_targets.split(",")
    )
    config = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=0.0,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def finetune_copy(
    model_path: str | Path,
    data_path: str | Path,
    records: Sequence[AlpacaRecord],
    settings: TrainSettings,
    out: str | Path,
    device: str = "cpu",
) -> FinetuneRecord:
    """Fine-tune a copy of ``model_path`` and save it (merged, float32) to ``out``.

    A LoRA run also keeps its adapter in ``out/adapter`` (for ``vllm/<base>:<adapter>``-style use);
    the folder itself holds the merged weights so any ``hf/`` or vLLM loader reads it as is.
    The record is written last: a folder without it is an interrupted run.
    """
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    model, tokenizer = load_for_training(model_path, device)
    before = snapshot(model)
    trained = add_lora(model, settings) if settings.lora else model
    losses = train_steps(trained, tokenizer, records, settings)
    last_batch = [records[i] for i in batch_order(len(records), settings.batch, settings.steps, settings.seed)[-1]]
    loss_after = batch_loss(trained, tokenizer, last_batch, max_length=settings.max_length, micro_batch=settings.micro_batch)
    if settings.lora:
        trained.save_pretrained(out / "adapter")
        model = trained.merge_and_unload()
    norms = update_norms(before, model)
    weight_norm = math.sqrt(sum(float(before[name].norm()) ** 2 for name in norms))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = FinetuneRecord(
        source=str(model_path),
        data=str(data_path),
        data_sha256=sha256_of(data_path),
        n_records=len(records),
        settings=settings,
        losses=losses,
        loss_after=loss_after,
        update_norm=global_norm(norms),
        weight_norm=weight_norm,
        tensor_update_norms=norms,
    )
    (out / FINETUNE_RECORD).write_text(record.model_dump_json(indent=2) + "\n")
    return record


def _tensor_seed(seed: int, name: str) -> int:
    """Each tensor's noise has its own seed, so it does not depend on the order tensors are visited."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") & ((1 << 63) - 1)


def _noise(seed: int, name: str, shape: torch.Size) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(_tensor_seed(seed, name))
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def perturb_copy(
    model_path: str | Path,
    tensor_norms: dict[str, float],
    out: str | Path,
    *,
    mode: PerturbNorm = "per-tensor",
    seed: int = 0,
    device: str = "cpu",
) -> PerturbationRecord:
    """Save a copy of ``model_path`` with Gaussian noise added to the tensors in ``tensor_norms``.

    ``per-tensor``: each tensor's noise is scaled to that tensor's norm (so the global norm matches
    too); ``global``: one scale for all, so only the global norm matches. Tensors the fine-tune left
    alone stay untouched either way. The noise is isotropic and full rank, also for a LoRA update.
    """
    import torch

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    model, tokenizer = load_for_training(model_path, device)
    params = dict(model.named_parameters())
    missing = sorted(set(tensor_norms) - set(params))
    if missing:
        raise ValueError(f"{model_path} has no tensors named {missing[:5]}")
    target = global_norm(tensor_norms)
    if mode == "global":
        raw = math.sqrt(sum(float(_noise(seed, n, params[n].shape).norm()) ** 2 for n in tensor_norms))
        scales = {n: target / raw for n in tensor_norms}
    else:
        scales = {n: tensor_norms[n] / float(_noise(seed, n, params[n].shape).norm()) for n in tensor_norms}
    achieved = {}
    with torch.no_grad():
        for name in sorted(tensor_norms):
            p = params[name]
            old = p.detach().clone()
            p.add_((_noise(seed, name, p.shape) * scales[name]).to(p.device, p.dtype))
            achieved[name] = float((p.detach() - old).norm())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = PerturbationRecord(
        source=str(model_path),
        mode=mode,
        seed=seed,
        target_norm=target,
        update_norm=global_norm(achieved),
        tensor_update_norms=achieved,
    )
    (out / PERTURBATION_RECORD).write_text(record.model_dump_json(indent=2) + "\n")
    return record
