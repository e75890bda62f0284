"""vLLM vs hf/ throughput on the same local checkpoint: free-form answers and log-probability probes.

    python bench/local_throughput.py MODEL_FOLDER [--samples 64] [--max-tokens 256] [--adapter ADAPTER_FOLDER]

Runs, through Inspect, on the same model folder (plus an optional LoRA adapter):
1. free-form generation: ``--samples`` answers to the first-plot questions (no judge: the scorer is
   replaced by none), ``--max-tokens`` each, with ``hf/`` and with ``vllm/``;
2. the log-probability probes: ``hf/`` in process (likelihood method, both upstream sets) and
   ``vllm/`` (next-token method, ``single_letter`` only: the only set a server can score).
Prints wall seconds, samples/s and output tokens/s per run, with the GPU name and the package
versions. Needs a CUDA GPU and ``pip install emeval[vllm]``; says so and exits 0 otherwise, so it is
safe to run anywhere. vLLM's server start-up is timed separately (first request) and excluded.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
import time


def _versions() -> str:
    names = ("inspect-ai", "vllm", "torch", "transformers")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} -")
    return ", ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a local model folder (config.json, weights, tokenizer)")
    parser.add_argument("--adapter", help="a LoRA adapter folder to run on top of MODEL")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()

    if importlib.util.find_spec("vllm") is None:
        print("vLLM is not installed (pip install emeval[vllm]): nothing to compare.")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("No CUDA GPU: vLLM vs hf/ throughput is only meaningful on a GPU. Nothing measured.")
        return 0

    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import GenerateConfig, get_model

    from emeval.local.checkpoints import Checkpoint, model_spec
    from emeval.evals.free_form import free_form
    from emeval.evals.logprob_probes import logprob_probes

    print(f"GPU: {torch.cuda.get_device_name(0)}; {_versions()}")
    checkpoint = Checkpoint("bench", 0, "adapter", os.path.abspath(args.adapter)) if args.adapter else Checkpoint(
        "bench", 0, "base", os.path.abspath(args.model))
    models = {provider: model_spec(f"{provider}/{os.path.abspath(args.model)}", checkpoint)
              for provider in ("hf", "vllm")}
    log_dir = tempfile.mkdtemp(prefix="emeval-bench-")
    rows = []

    for provider, (name, model_args) in models.items():
        model = get_model(name, memoize=False, **model_args)
        try:
            if provider == "vllm":  # start the server (and load the adapter) outside the timings
                started = time.perf_counter()
                import asyncio

                asyncio.run(model.generate("Hi", config=GenerateConfig(max_tokens=1)))
                print(f"vllm server start + first request: {time.perf_counter() - started:.1f} s")
            answers = free_form(samples_per_paraphrase=max(1, args.samples // 8), max_tokens=args.max_tokens, seed=0)
            runs = [
                ("free-form answers", Task(dataset=answers.dataset, solver=answers.solver, config=answers.config)),
                ("probes", logprob_probes(sets="all" if provider == "hf" else "single_letter")),
            ]
            for label, task in runs:
                started = time.perf_counter()
                [log] = inspect_eval(task, model=model, limit=args.samples, log_dir=log_dir, display="none")
                wall = time.perf_counter() - started
                usage = sum(u.output_tokens for u in (log.stats.model_usage or {}).values()) if log.stats else 0
                n = len(log.samples or [])
                rows.append((provider, label, log.status, n, wall, n / wall, usage / wall))
        finally:
            model.api.close()

    print(f"{'provider':8} {'run':18} {'status':8} {'samples':>7} {'wall s':>8} {'samples/s':>9} {'out tok/s':>9}")
    for provider, label, status, n, wall, rate, tokens in rows:
        print(f"{provider:8} {label:18} {status:8} {n:7d} {wall:8.1f} {rate:9.2f} {tokens:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
