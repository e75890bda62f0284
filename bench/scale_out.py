"""Sharded throughput: one free-form run as K local shard processes through ``emeval.shards.run_local``
(the path ``emeval run --processes K`` takes), against the lean loopback server.

    python bench/scale_out.py [--samples 4800] [--concurrency 64] [--latency 0.5] [--processes 1 2]

Each K runs the same N samples, split into K shards (sample ranges of one (task, model) pair), each
shard an ``eval_set`` in its own spawned process with C/K connections, so C calls are in flight in
all and the ideal is the same for every K (bench/common.py ``ideal_seconds``: 3N x L / C). Printed
per K: wall (from starting the pool to the last shard's exit: Python start-up and log finalisation
included), ratio = ideal / wall, CPU ms per model call (all shard processes, whole lives, from
``RUSAGE_CHILDREN``), the calls the server answered, and the load average.
Options: the recommended ones of bench/README.md (display none, no realtime log, no score display,
no model API log).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, ideal_seconds, lean_server, load_average, question_file  # noqa: E402

MODEL = "openai-api/bench/bench-model"
"""Subject and judge: one model name at the server, so one pool of connections per shard (the
set-up of bench/README.md)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4800)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    from emeval.shards import RunSpec, run_local, task_specs

    os.chdir(ROOT)
    os.environ.setdefault("EMEVAL_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    ideal, formula = ideal_seconds(args.samples, args.latency, args.concurrency, shared_pool=True,
                                   max_samples=args.concurrency)
    print(f"N={args.samples} C={args.concurrency} L={args.latency}s  ideal {ideal:.2f}s ({formula})")
    with lean_server(args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"BENCH_BASE_URL": server.base_url, "BENCH_API_KEY": "bench"})
        questions = question_file(Path(tmp) / "questions.yaml", args.samples)
        for k in args.processes:
            if args.concurrency % k:
                raise SystemExit(f"--concurrency {args.concurrency} is not a multiple of {k} processes")
            per_shard = args.concurrency // k
            spec = RunSpec(
                tuple(task_specs("evals/free_form.py")), (MODEL,), str(Path(tmp) / f"logs-{k}"),
                task_args={"questions": str(questions), "seed": 0},
                model_roles={"grader": MODEL},
                eval_set_args={"max_connections": per_shard, "max_samples": per_shard, "display": "none",
                               "log_realtime": False, "score_display": False, "log_model_api": False,
                               "retry_attempts": 1},
            )
            # a fresh judge cache per K (inherited by the spawned shards): the same answers judged again
            # by a later K would be cache hits, not calls
            os.environ["INSPECT_CACHE_DIR"] = str(Path(tmp) / f"cache-{k}")
            server.reset()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.monotonic()
            results = run_local(spec, k, k)
            wall = time.monotonic() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            failed = [r for r in results if not r.success]
            if failed:
                raise SystemExit(f"shards failed: {[(str(r.shard), r.error) for r in failed]}")
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            stats = server.stats()
            calls = sum(stats["calls"].values())
            print(f"K={k}: wall {wall:.2f}s  ratio {ideal / wall:.3f}  CPU {cpu:.1f}s = {cpu / calls * 1000:.2f} ms/call "
                  f"(all shard processes)  server CPU {stats['cpu_s'] / calls * 1000:.2f} ms/call  calls {calls} "
                  f"(expected {3 * args.samples})  calling phase {stats['last_response'] - stats['first_request']:.2f}s  "
                  f"load {load_average()}", flush=True)


if __name__ == "__main__":
    main()
