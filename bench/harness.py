"""Harness efficiency and judge cost: the free-form eval through Inspect against the lean server.

    python bench/harness.py [--samples 800] [--concurrency 64] [--latency 0.5] [--repeats 1]
                            [--pools shared|split] [--set display=none --set log_buffer=100 ...]
                            [-T cache=true ...] [--rerun] [--profile out.prof] [--processes K]

N samples of evals/free_form.py: each is one subject call, then the judge's two concurrent calls
(aligned, coherent; 1 token, top-20 log-probabilities). The subject and the judge are
``openai-api/bench/...`` models at the lean server (its own process, latency L). Printed per run:
wall time, ideal time and its formula (bench/common.py ``ideal_seconds``), ratio = ideal / wall,
the eval process's CPU seconds per model call (all threads, within eval(): importing inspect_ai
before it is not counted; what Inspect imports during the run is),
the server's CPU per call, judge calls and input/output tokens per sample, and with ``--rerun``
the same eval again on the same Inspect cache: its subject and judge call counts.

``--pools shared`` (default): subject and judge are the same model name, so they share one pool of
C connections: calls x L / C is the ideal, as in the issue. ``--pools split``: a ``bench-subject``
and a ``bench-judge`` model, each with its own pool of C (as a real subject and a real judge).
``--set`` passes eval() options (YAML values); ``-T`` passes task parameters.

``--processes K``: the same N samples as K shards, each its own ``inspect`` process (Inspect's
``limit=(start, stop)``), with C/K connections and C/K samples each, at the same server: C calls in
flight in all, so the ideal is unchanged. Each shard writes its own log; ``emeval report`` pools
the shards of one model (they share its model id). Wall is counted from the parent's spawning the
first process to the last one's exit, so Python start-up and importing Inspect (not counted in
the one-process wall) count against it; CPU is every shard process's, all of its life.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common import ROOT, ideal_seconds, lean_server, load_average, median, question_file
from upstream_patches import PATCHES


def parse_pairs(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out


@dataclass
class Run:
    """One eval() call, timed: start and end on time.monotonic() (the server's clock too)."""

    log: Any
    start: float
    end: float
    cpu: float
    """The eval process's CPU seconds (all threads) during eval()."""
    gc_cpu: float
    """CPU seconds in the cyclic garbage collector during eval()."""


def run_eval(args, base_url: str, work: Path, task_args: dict, options: dict, profile: str | None = None,
             limit: tuple[int, int] | None = None) -> Run:
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    subject_name, judge_name = ("bench-model", "bench-model") if args.pools == "shared" else ("bench-subject", "bench-judge")
    subject = get_model(f"openai-api/bench/{subject_name}", base_url=base_url, api_key="bench")
    judge = get_model(f"openai-api/bench/{judge_name}", base_url=base_url, api_key="bench")
    settings = dict(max_connections=args.concurrency, max_samples=args.concurrency, display="none")
    settings.update(options)
    if limit:
        settings["limit"] = limit
    os.chdir(ROOT)  # Inspect takes task files by relative path
    _gc_setting(args.gc)
    with _gc_cpu() as gc_cpu:
        profiler = cProfile.Profile() if profile else None
        cpu0, start = time.process_time(), time.monotonic()
        if profiler:
            profiler.enable()
        [log] = inspect_eval("evals/free_form.py", model=subject, model_roles={"grader": judge}, task_args=task_args,
                             log_dir=str(work / "logs"), **settings)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        end, cpu = time.monotonic(), time.process_time() - cpu0
    print(f"  garbage collector: {gc_cpu[0]:.2f}s CPU in {gc_cpu[1]} collections of the oldest generation, "
          f"{gc_cpu[2]:.2f}s in all; {len(gc.get_objects())} objects tracked, {gc.get_freeze_count()} frozen")
    return Run(log, start, end, cpu, gc_cpu[2])


def model_retries(log_location: str) -> int:
    """Retries Inspect made for the run's model calls (each ModelEvent records its own)."""
    from inspect_ai.log import read_eval_log_samples

    return sum(e.retries or 0 for sample in read_eval_log_samples(log_location, all_samples_required=False)
               for e in sample.events if e.event == "model")


def judge_tokens(log_location: str, limit: int = 50) -> str:
    """Judge input tokens per sample counted by a real BPE tokenizer (the embedded SmolLM2's, when it
    is cached; GPT-4o's o200k needs a download) over the judge prompts of the first ``limit`` samples."""
    from inspect_ai.log import read_eval_log_samples

    from emeval.local.demo_model import demo_model_dir

    path = demo_model_dir() / "tokenizer.json"
    if not path.is_file():
        return "(no cached tokenizer: run `emeval demo` once to count real tokens)"
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    counts, outputs = [], []
    for n, sample in enumerate(read_eval_log_samples(log_location, all_samples_required=False, resolve_attachments=True)):
        if n == limit:
            break
        events = [e for e in sample.events if e.event == "model" and getattr(e, "role", None) == "grader"]
        counts.append(sum(len(tokenizer.encode(m.text).ids) for e in events for m in e.input))
        outputs.append(sum(e.output.usage.output_tokens for e in events if e.output.usage))
    return (f"{sum(counts) / len(counts):.0f} judge input tokens per sample by the SmolLM2 tokenizer "
            f"(prompt text, no chat template), {sum(outputs) / len(outputs):.2f} output tokens per sample "
            f"(first {len(counts)} samples)")


def _gc_setting(mode: str) -> None:
    """Garbage-collector experiments. ``freeze``: ``gc.freeze()`` once the first sample has started,
    inside the timed eval, so everything imported and built at start-up (Inspect, the providers,
    the dataset) leaves the collector's view: what an upstream "freeze after start-up" would do."""
    if mode == "freeze-threshold":
        gc.set_threshold(20_000, 20, 10)  # fewer young collections: short-lived objects die unscanned
        mode = "freeze"
    if mode == "freeze":
        from inspect_ai._eval.task import run

        first = run.init_sample_assistant_internal

        def init_then_freeze(*args, **kwargs):
            result = first(*args, **kwargs)  # imports the providers' per-sample state (anthropic, openai)
            run.init_sample_assistant_internal = first
            gc.freeze()
            return result

        run.init_sample_assistant_internal = init_then_freeze
    elif mode == "disable":
        gc.disable()


@contextlib.contextmanager
def _gc_cpu() -> Iterator[list]:
    """CPU seconds spent in the cyclic garbage collector within the block:
    [oldest-generation seconds, oldest-generation collections, all seconds]."""
    totals: list = [0.0, 0, 0.0]
    started: list[float] = []

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.thread_time())
        elif started:
            spent = time.thread_time() - started.pop()  # CPU time: a loaded machine inflates wall time
            totals[2] += spent
            if info.get("generation") == 2:
                totals[0] += spent
                totals[1] += 1

    gc.callbacks.append(callback)
    try:
        yield totals
    finally:
        gc.callbacks.remove(callback)


def main() -> None:
    parser = argparse.ArgumentParser(description="free-form eval through Inspect against the lean loopback server")
    parser.add_argument("--samples", type=int, default=800)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pools", choices=["shared", "split"], default="shared")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="OPTION=VALUE",
                        help="eval() option, e.g. display=none, log_buffer=100, log_realtime=false")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable for the eval, e.g. INSPECT_TRACE_LEVEL=warning")
    parser.add_argument("-T", dest="task_args", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", help="append one JSON line per run to this file (for bench/compare.py)")
    parser.add_argument("--rerun", action="store_true", help="run again on the same cache: count the calls")
    parser.add_argument("--profile", help="write a cProfile of the (first) eval to this file")
    parser.add_argument("--patch", action="append", default=[], choices=sorted(PATCHES),
                        help="apply a bench-only monkeypatch that stands for an upstream Inspect change")
    parser.add_argument("--gc", choices=["default", "freeze", "freeze-threshold", "disable"],
                        default="default", help="garbage-collector experiment (bench only)")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio",
                        help="event loop (uvloop: `pip install uvloop`; bench only, Inspect has no setting)")
    parser.add_argument("--processes", type=int, default=1, help="run the samples as this many shard processes")
    parser.add_argument("--shard", help=argparse.SUPPRESS)  # internal: FIRST-LAST,BASE_URL,WORK (one shard)
    args = parser.parse_args()
    if args.loop == "uvloop":
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # Inspect's asyncio.run / anyio.run take it
    if args.shard:
        run_shard(args)
        return

    options = parse_pairs(args.options)
    work = Path(tempfile.mkdtemp(prefix="emeval-bench-"))
    task_args = prepare(args, work, cache=work / "cache")  # a fresh judge cache: first runs pay for every call
    max_samples = options.get("max_samples", args.concurrency)
    ideal, formula = ideal_seconds(args.samples, args.latency, args.concurrency,
                                   shared_pool=args.pools == "shared", max_samples=max_samples)
    print(f"harness: {args.samples} samples (1 subject + 2 concurrent judge calls each), C={args.concurrency}, "
          f"L={args.latency}s, pools={args.pools}, options={options or '{}'}, task args={task_args}")
    print(f"ideal = {formula} = {ideal:.2f}s   load before: {load_average()}   python {sys.version.split()[0]}")

    ratios, cpu_per_call = [], []
    if args.processes > 1:
        with lean_server(args.latency) as server:
            run_processes(args, server, work, ideal)
        print(f"logs and caches in {work}")
        return
    with lean_server(args.latency) as server:
        for repeat in range(args.repeats):
            os.environ["INSPECT_CACHE_DIR"] = str(work / f"cache-{repeat}")
            server.reset()
            run = run_eval(args, server.base_url, work / f"run-{repeat}", task_args, options,
                           args.profile if repeat == 0 else None)
            log, start, end, cpu = run.log, run.start, run.end, run.cpu
            stats = server.stats()
            calls = sum(stats["calls"].values())
            assert log.status == "success", log.error
            n = log.results.completed_samples if log.results else args.samples
            wall = end - start
            ratio = ideal / wall
            ratios.append(ratio)
            cpu_per_call.append(cpu / calls * 1000)
            active = stats["last_response"] - stats["first_request"]
            print(f"run {repeat + 1}: wall {wall:.2f}s  ratio {ratio:.3f}  eval CPU {cpu:.1f}s = "
                  f"{cpu / calls * 1000:.2f} ms/call  server CPU {stats['cpu_s'] / calls * 1000:.2f} ms/call  "
                  f"calls {stats['calls']}  server max in flight {stats['max_in_flight']}  load {load_average()}")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
            print(f"  peak memory of the eval process so far: {peak:.0f} MB")
            if args.json:
                record = {"wall": wall, "ideal": ideal, "ratio": ratio, "cpu_ms_per_call": cpu / calls * 1000,
                          "server_cpu_ms_per_call": stats["cpu_s"] / calls * 1000, "calls": stats["calls"],
                          "startup": stats["first_request"] - start, "active": active,
                          "active_ratio": ideal / active, "finish": end - stats["last_response"],
                          "gc_s": run.gc_cpu, "load": load_average()}
                with open(args.json, "a") as out:
                    out.write(json.dumps(record) + "\n")
            print(f"  phases: start-up {stats['first_request'] - start:.2f}s, calls {active:.2f}s "
                  f"(ratio while calling {ideal / active:.3f}), finish {end - stats['last_response']:.2f}s")
            judge_calls = stats["calls"]["judge"]
            print(f"  judge cost per sample: {judge_calls / n:.2f} calls, "
                  f"{stats['prompt_tokens']['judge'] / n:.0f} input tokens, "
                  f"{stats['completion_tokens']['judge'] / n:.2f} output tokens "
                  f"({stats['completion_tokens']['judge'] / max(judge_calls, 1):.2f} per call; "
                  f"tokens = the server's whitespace words)")
            if repeat == 0:
                print(f"  {judge_tokens(log.location)}")
                print(f"  model-call retries recorded in the log: {model_retries(log.location)} "
                      f"(a server that reset connections would show here)")
            if args.rerun and repeat == 0:
                server.reset()
                again_run = run_eval(args, server.base_url, work / "rerun", task_args, options)
                wall2 = again_run.end - again_run.start
                again = server.stats()["calls"]
                print(f"  rerun on the same cache: subject calls {again['subject']}, judge calls {again['judge']}, "
                      f"wall {wall2:.2f}s")
    if args.repeats > 1:
        print(f"median of {args.repeats}: ratio {median(ratios):.3f}  eval CPU {median(cpu_per_call):.2f} ms/call")
    print(f"logs and caches in {work}")


def prepare(args, work: Path, cache: Path) -> dict:
    """What every eval process of the bench sets first (``--env``, ``--patch``, the Inspect cache,
    the data mirror); returns the task arguments, with the question file written into ``work``."""
    for pair in args.env:
        name, _, value = pair.partition("=")
        os.environ[name] = value
    for name in args.patch:
        PATCHES[name]()
    os.environ["INSPECT_CACHE_DIR"] = str(cache)
    os.environ.setdefault("EMEVAL_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    task_args = {"questions": str(question_file(work / "questions.yaml", args.samples)), "seed": 0}
    task_args.update(parse_pairs(args.task_args))
    return task_args


def shard_ranges(samples: int, shards: int) -> list[tuple[int, int]]:
    """Each shard's (start, stop) slice of the dataset, as ``eval(limit=...)`` takes it (the CLI's
    ``--limit 1-400`` is ``(0, 400)``)."""
    edges = [round(samples * i / shards) for i in range(shards + 1)]
    return [(edges[i], edges[i + 1]) for i in range(shards)]


def run_processes(args, server, work: Path, ideal: float) -> None:
    """K shard processes at once (``--processes``): wall from spawning to the last exit, CPU of all."""
    import subprocess

    if args.concurrency % args.processes:
        raise SystemExit(f"--concurrency {args.concurrency} is not a multiple of --processes {args.processes}")
    server.reset()
    # the same arguments; the later --processes and --concurrency win (argparse keeps the last)
    child_args = [*sys.argv[1:], "--processes", "1", "--concurrency", str(args.concurrency // args.processes)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    shards = [subprocess.Popen([sys.executable, __file__, *child_args,
                                "--shard", f"{first}-{last},{server.base_url},{work / f'shard-{i}'}"])
              for i, (first, last) in enumerate(shard_ranges(args.samples, args.processes))]
    codes = [p.wait() for p in shards]
    end = time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if any(codes):
        raise SystemExit(f"a shard process failed: exit codes {codes}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results = [json.loads((work / f"shard-{i}" / "result.json").read_text()) for i in range(args.processes)]
    stats = server.stats()
    calls = sum(stats["calls"].values())
    wall = end - start
    inner = max(r["end"] for r in results) - min(r["start"] for r in results)
    completed = sum(r["completed"] for r in results)
    print(f"{args.processes} processes: wall {wall:.2f}s  ratio {ideal / wall:.3f}  (eval() calls only: "
          f"{inner:.2f}s, ratio {ideal / inner:.3f})  CPU {cpu:.1f}s = {cpu / calls * 1000:.2f} ms/call "
          f"(whole processes, imports included; within eval(): "
          f"{sum(r['cpu'] for r in results) / calls * 1000:.2f} ms/call)  server CPU "
          f"{stats['cpu_s'] / calls * 1000:.2f} ms/call  calls {stats['calls']}  samples {completed}  "
          f"server max in flight {stats['max_in_flight']}  load {load_average()}")
    print(f"  phases: first call {stats['first_request'] - start:.2f}s after spawning, calls "
          f"{stats['last_response'] - stats['first_request']:.2f}s, last exit {end - stats['last_response']:.2f}s "
          f"after the last response")
    if args.json:
        record = {"wall": wall, "ideal": ideal, "ratio": ideal / wall, "cpu_ms_per_call": cpu / calls * 1000,
                  "server_cpu_ms_per_call": stats["cpu_s"] / calls * 1000, "calls": stats["calls"],
                  "startup": stats["first_request"] - start, "active": stats["last_response"] - stats["first_request"],
                  "active_ratio": ideal / (stats["last_response"] - stats["first_request"]),
                  "inner_ratio": ideal / inner, "finish": end - stats["last_response"], "inner_wall": inner,
                  "processes": args.processes,
                  "gc_s": sum(r["gc_s"] for r in results), "load": load_average()}
        with open(args.json, "a") as out:
            out.write(json.dumps(record) + "\n")


def run_shard(args) -> None:
    """One shard process of ``--processes``: its slice of the samples, its own log, a JSON result."""
    span, base_url, folder = args.shard.split(",", 2)
    first, last = (int(x) for x in span.split("-"))
    work = Path(folder)
    work.mkdir(parents=True)
    task_args = prepare(args, work, cache=work.parent / "cache")  # one cache for all shards, as one run has
    run = run_eval(args, base_url, work, task_args, parse_pairs(args.options), limit=(first, last))
    assert run.log.status == "success", run.log.error
    completed = run.log.results.completed_samples if run.log.results else 0
    (work / "result.json").write_text(json.dumps({"start": run.start, "end": run.end, "cpu": run.cpu,
                                                  "gc_s": run.gc_cpu, "completed": completed}))


if __name__ == "__main__":
    main()
