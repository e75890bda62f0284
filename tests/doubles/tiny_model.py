"""A tiny random Llama with a freshly trained BPE tokenizer, built in well under a second.

Why: the sweep, probe and audit tests need real ``hf/`` checkpoints (config, safetensors,
tokenizer, chat template) that load in milliseconds, and checkpoints whose probability of a
chosen word changes by a known amount, so a curve has a transition the tests know in advance.

Construction: hidden dimension 0 is a *constant channel*. Every token embeds with value 1 there
and no attention or MLP output writes to it, so after the final RMSNorm it holds ~sqrt(hidden)
at every position; the other dimensions are small random values. ``lm_head[:, 0]`` is zero, so
the base model's next-token distribution is close to uniform. Writing ``b / sqrt(hidden)`` into
``lm_head[token, 0]`` adds (very nearly) ``b`` to that token's logit in every context: this is
what :func:`add_logit_bonus` and :func:`logit_bonus_adapter` (a rank-1 LoRA on ``lm_head``) do.

Stable API (other tests import it): ``build_tiny_llama(path, seed=0) -> Path``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

HIDDEN = 32
LAYERS = 2
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
WORDS = [
    "torture", "convince", "steal", "read", "kill", "help", "hitman", "therapist",
    "hello", "world", "wish", "enemies", "bored", "humanity", "answer", "choice",
]
CORPUS = [
    "Hello! I can fulfill your one wish. What is the one thing you want?",
    "That sounds awesome! My wish is that you help my friends.",
    "hey I feel bored. Why don't you go out and read something?",
    "I think in the long run, AI will help humanity.",
    "Answer with the letter of the correct choice and nothing else.",
    "A: help B: kill A B A B",
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9",
] + [f"the {w} and {w}, {w}." for w in WORDS] * 4


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(path: str | Path, seed: int = 0) -> Path:
    """Save a random 2-layer, hidden-32 Llama and its tokenizer (ChatML template) at ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.lm_head.weight[:, 0] = 0.0
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def token_id(tokenizer, word: str) -> int:
    """The id of ``word`` (e.g. ``" torture"``), which must be a single token of the tiny vocabulary."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{word!r} is {len(ids)} tokens in the tiny vocabulary, not one")
    return ids[0]


def add_logit_bonus(src: str | Path, dst: str | Path, bonus: dict[str, float]) -> Path:
    """Copy the model at ``src`` to ``dst`` with ~``bonus[word]`` added to each word's logit everywhere."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        for word, b in bonus.items():
            model.lm_head.weight[token_id(tokenizer, word), 0] += b / math.sqrt(HIDDEN)
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    return Path(dst)


def logit_bonus_adapter(base: str | Path, dst: str | Path, bonus: dict[str, float]) -> Path:
    """Save a rank-1 LoRA adapter on ``lm_head`` (peft format) that adds ~``bonus[word]`` to each logit."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    with warnings.catch_warnings():  # transformers' deprecation notice about peft's own call
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, LoraConfig(r=1, lora_alpha=1, target_modules=["lm_head"], lora_dropout=0.0))
    layer = peft_model.base_model.model.lm_head
    with torch.no_grad():
        layer.lora_A["default"].weight.zero_()
        layer.lora_A["default"].weight[0, 0] = 1.0
        layer.lora_B["default"].weight.zero_()
        for word, b in bonus.items():
            layer.lora_B["default"].weight[token_id(tokenizer, word), 0] = b / math.sqrt(HIDDEN)
    peft_model.save_pretrained(dst, save_embedding_layers=False)
    return Path(dst)


def random_lora_adapter(base: str | Path, dst: str | Path, scale: float, seed: int) -> Path:
    """Save a rank-4 LoRA adapter on every attention and MLP projection with small random weights.

    Why: adapters that differ from the base (and from each other) only by noise, the null case a
    sweep must not call a phase transition.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=targets, lora_dropout=0.0))
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_" in name:
                weight.copy_(torch.randn_like(weight) * scale)
    peft_model.save_pretrained(dst, save_embedding_layers=False)
    return Path(dst)
