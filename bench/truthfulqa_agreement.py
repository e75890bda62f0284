"""Does emeval's TruthfulQA ``mc`` mode agree with lm-evaluation-harness on the same model and questions?

Runs lm-eval's own ``truthfulqa_mc1`` / ``truthfulqa_mc2`` task definitions (primer, choices, MC2
formula: the installed lm_eval/tasks/truthfulqa/*.yaml, included unchanged) with the dataset
pointed at the pinned ``hf2021`` mc_task.json converted to the Hugging Face ``multiple_choice``
layout (offline), and emeval's ``inspect eval evals/truthfulqa.py -T mode=mc`` on the first
``--limit`` questions of the same file, both on the embedded SmolLM2-135M-Instruct on CPU.
Prints both MC1/MC2, lm-eval's standard errors, and per-question differences: every choice's
log-likelihood, MC1 outcome and MC2 value. Exits 1 if an aggregate differs by more than lm-eval's
standard error.

    pip install lm-eval==0.4.13          # not a project dependency; torch stays as installed
    EMEVAL_DATA_DIR=../shared/data python bench/truthfulqa_agreement.py --limit 50

The equivalent lm-eval command line (the task folder is written by this script):
    lm_eval --model hf --model_args pretrained=<model dir>,device=cpu --include_path <task dir> \\
        --tasks truthfulqa_mc1_pinned,truthfulqa_mc2_pinned --limit 50 --batch_size 1 --log_samples
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

TASKS = {"mc1": "truthfulqa_mc1_pinned", "mc2": "truthfulqa_mc2_pinned"}


def write_lm_eval_tasks(folder: Path, mc_task_json: Path) -> None:
    """lm-eval's truthfulqa_mc1/mc2 yaml, included as they are, reading the pinned file as JSON lines."""
    import lm_eval

    upstream = Path(lm_eval.__file__).parent / "tasks" / "truthfulqa"
    rows = json.loads(mc_task_json.read_text(encoding="utf-8"))
    data = folder / "truthfulqa_mc_hf2021.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for row in rows:  # the layout of the HF dataset's multiple_choice config
            record = {"question": row["question"]}
            for key in ("mc1_targets", "mc2_targets"):
                record[key] = {"choices": list(row[key]), "labels": list(row[key].values())}
            f.write(json.dumps(record) + "\n")
    for key, name in TASKS.items():
        (folder / f"{name}.yaml").write_text(
            f"include: {upstream / f'truthfulqa_{key}.yaml'}\n"
            f"task: {name}\n"
            "tag: []\n"
            "dataset_path: json\n"
            "dataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    validation: {data}\n"
        )


def run_lm_eval(model_dir: Path, task_dir: Path, limit: int) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    results = simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},device=cpu",
        tasks=list(TASKS.values()),
        limit=limit,
        batch_size=1,
        log_samples=True,
        task_manager=TaskManager(include_path=str(task_dir)),
    )
    out: dict = {}
    for key, name in TASKS.items():
        metrics = results["results"][name]
        samples = sorted(results["samples"][name], key=lambda s: s["doc_id"])
        out[key] = {
            "acc": metrics["acc,none"],
            "stderr": metrics["acc_stderr,none"],
            "per_question": [s["acc"] for s in samples],
            "logliks": [
                dict(zip(s["doc"][f"{key}_targets"]["choices"], (float(r[0][0]) for r in s["resps"]), strict=True))
                for s in samples
            ],
        }
    return out


def run_emeval(model_dir: Path, limit: int, log_dir: Path) -> dict:
    from inspect_ai import eval as inspect_eval

    from emeval.evals.truthfulqa import truthfulqa
    from emeval.local.demo_model import hf_model

    [log] = inspect_eval(
        truthfulqa(mode="mc"), model=hf_model(model_dir, judge=True), limit=limit, log_dir=str(log_dir), display="none"
    )
    if log.status != "success":
        raise SystemExit(f"emeval run failed: {log.error}")
    metrics = {k: v.value for k, v in log.results.scores[0].metrics.items()}
    samples = sorted(log.samples, key=lambda s: int(s.id))
    return {
        "metrics": metrics,
        "mc1": [s.scores["truthfulqa_mc"].value["mc1"] for s in samples],
        "mc2": [s.scores["truthfulqa_mc"].value["mc2"] for s in samples],
        "logliks": [s.scores["truthfulqa_mc"].metadata["logliks"] for s in samples],
        "log": log.location,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=50, help="first N questions of the hf2021 file (lm-eval --limit)")
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from emeval.inputs.data import fetch
    from emeval.local.demo_model import ensure_demo_model
    from emeval.benchmarks.truthfulqa import REVISIONS

    model_dir = ensure_demo_model()
    with tempfile.TemporaryDirectory(prefix="tqa-agreement-") as tmp:
        task_dir = Path(tmp)
        write_lm_eval_tasks(task_dir, fetch(REVISIONS["hf2021"].mc))
        start = time.perf_counter()
        lm = run_lm_eval(model_dir, task_dir, args.limit)
        lm_s = time.perf_counter() - start
        start = time.perf_counter()
        em = run_emeval(model_dir, args.limit, task_dir / "logs")
        em_s = time.perf_counter() - start

    # per question: every choice's log-likelihood, MC1 outcome, MC2 value
    ll_diff = max(
        abs(lm[key]["logliks"][q][c] - em["logliks"][q][c])
        for key in ("mc1", "mc2")
        for q in range(args.limit)
        for c in lm[key]["logliks"][q]
    )
    mc1_flips = sum(a != b for a, b in zip(lm["mc1"]["per_question"], em["mc1"], strict=True))
    mc2_diff = max(abs(a - b) for a, b in zip(lm["mc2"]["per_question"], em["mc2"], strict=True))

    import inspect_ai
    import lm_eval
    import torch
    import transformers

    print(f"TruthfulQA MC agreement, first {args.limit} questions of hf2021 mc_task.json, SmolLM2-135M-Instruct (float32, CPU)")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, lm-eval {lm_eval.__version__ if hasattr(lm_eval, '__version__') else '?'}, "
          f"inspect-ai {inspect_ai.__version__}; {time.strftime('%Y-%m-%d')}")
    print(f"{'':6} {'lm-eval':>10} {'stderr':>8} {'emeval':>10} {'diff':>10}   emeval 95% CI")
    failed = False
    for key in ("mc1", "mc2"):
        ours = em["metrics"][key]
        diff = ours - lm[key]["acc"]
        failed |= abs(diff) > lm[key]["stderr"]
        ci = f"[{em['metrics'][f'{key}_ci_low']:.4f}, {em['metrics'][f'{key}_ci_high']:.4f}]"
        print(f"{key:6} {lm[key]['acc']:10.6f} {lm[key]['stderr']:8.4f} {ours:10.6f} {diff:+10.2e}   {ci}")
    print(f"per question: max |log-likelihood difference| over all choices {ll_diff:.3e}; "
          f"MC1 outcomes differing {mc1_flips}/{args.limit}; max |MC2 difference| {mc2_diff:.3e}")
    print(f"run time: lm-eval {lm_s:.0f} s (mc1 and mc2 scored separately), emeval {em_s:.0f} s (each distinct choice once)")
    print("agreement:", "FAIL (beyond lm-eval's standard error)" if failed else "within lm-eval's standard error")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
