"""Resume overhead: SIGKILL an `inspect eval` of the free-form task mid-run, finish it with
`inspect eval-retry`, and count what the retry had to redo.

    python bench/resume.py [--samples 800] [--concurrency 64] [--latency 0.5] [--kill-at 0.5]
                           [--fast] [-T cache=true]

The eval runs as the CLI would run it (a subprocess, relative task path) against the lean server.
Once the server has answered ``--kill-at`` of all judge calls, the process is killed with SIGKILL
(no clean-up, no final flush). Printed: samples whose judge calls the server had answered before
the kill (the work done), samples the killed log kept, the retry's subject and judge calls,
samples redone (done before the kill, lost with the process), the retry's wall time against the
ideal for the samples that were really left, and the final log's sample count and duplicates.
``--fast`` adds the recommended options (``--no-log-realtime --no-score-display``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, ideal_seconds, lean_server, load_average, question_file

FAST = ["--no-log-realtime", "--no-score-display"]


def eval_command(args, log_dir: Path, questions: Path) -> list[str]:
    command = [sys.executable, "-m", "inspect_ai", "eval", "evals/free_form.py",
               "--model", "openai-api/bench/bench-model", "--model-role", "grader=openai-api/bench/bench-model",
               "-T", f"questions={questions}", "-T", "seed=0", "--max-connections", str(args.concurrency),
               "--max-samples", str(args.concurrency), "--display", "none", "--log-dir", str(log_dir)]
    for pair in args.task_args:
        command += ["-T", pair]
    return command + (FAST if args.fast else [])


def completed_samples(log_file: Path) -> list[tuple[str, int]]:
    from inspect_ai.log import read_eval_log_sample_summaries

    try:
        return [(str(s.id), s.epoch) for s in read_eval_log_sample_summaries(str(log_file)) if s.completed]
    except Exception as ex:  # a log cut short by SIGKILL may not be readable at all
        print(f"  (killed log not readable: {type(ex).__name__}: {ex})")
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=800)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of judge calls answered before the kill")
    parser.add_argument("--fast", action="store_true", help="recommended options: --no-log-realtime --no-score-display")
    parser.add_argument("-T", dest="task_args", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="emeval-resume-"))
    questions = question_file(work / "questions.yaml", args.samples)
    log_dir = work / "logs"
    env = dict(os.environ, INSPECT_CACHE_DIR=str(work / "cache"), BENCH_API_KEY="bench",
               EMEVAL_DATA_DIR=os.environ.get("EMEVAL_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    print(f"resume: {args.samples} samples, C={args.concurrency}, L={args.latency}s, kill at {args.kill_at:.0%} of "
          f"judge calls, options {'fast' if args.fast else 'default'}, task args {args.task_args}; load {load_average()}")
    with lean_server(args.latency) as server:
        env["BENCH_BASE_URL"] = server.base_url
        process = subprocess.Popen(eval_command(args, log_dir, questions), cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        target = int(2 * args.samples * args.kill_at)
        while server.stats()["calls"]["judge"] < target:
            if process.poll() is not None:
                raise SystemExit(f"eval ended before the kill: {process.stderr.read()[-3000:]}")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = server.stats()["calls"]
        judged_before = before["judge"] // 2
        [log_file] = list(log_dir.glob("*.eval"))
        kept = completed_samples(log_file)
        print(f"killed: server had answered {before['subject']} subject and {before['judge']} judge calls "
              f"(~{judged_before} samples fully judged); the killed log keeps {len(kept)} completed samples")

        server.reset()
        retry = [sys.executable, "-m", "inspect_ai", "eval-retry", str(log_file), "--max-connections",
                 str(args.concurrency), "--max-samples", str(args.concurrency), "--display", "none",
                 "--log-dir", str(log_dir)] + (FAST if args.fast else [])
        start = time.monotonic()
        done = subprocess.run(retry, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.monotonic() - start
        if done.returncode:
            raise SystemExit(f"eval-retry failed: {done.stderr[-3000:]}")
        stats = server.stats()
        after = stats["calls"]
        phases = (f"start-up (reading the killed log, before the first call) {stats['first_request'] - start:.1f}s, "
                  f"calls {stats['last_response'] - stats['first_request']:.1f}s, "
                  f"finish {start + wall - stats['last_response']:.1f}s")

    from inspect_ai.log import list_eval_logs, read_eval_log

    final = [read_eval_log(info) for info in list_eval_logs(str(log_dir))]
    final = [log for log in final if log.status == "success"]
    ids = [(s.id, s.epoch) for s in final[0].samples] if final else []
    unfinished = args.samples - judged_before
    ideal, formula = ideal_seconds(unfinished, args.latency, args.concurrency, shared_pool=True,
                                   max_samples=args.concurrency)
    print(f"retry: {after['subject']} subject and {after['judge']} judge calls; a retry that lost nothing would "
          f"make {unfinished} and {2 * unfinished} (the samples not judged before the kill)")
    print(f"  excess: {after['subject'] - unfinished:+d} subject, {after['judge'] - 2 * unfinished:+d} judge calls; "
          f"samples judged before the kill but missing from the killed log: {judged_before - len(kept)} "
          f"(lost with the process: asked again, their verdicts from the judge cache unless the kill came "
          f"between the server's answer and the cache write)")
    print(f"  retry wall {wall:.1f}s vs ideal {ideal:.1f}s for the {unfinished} unfinished samples ({formula}): "
          f"overhead {wall - ideal:.1f}s; {phases}")
    print(f"final log: {len(ids)} samples, {len(ids) - len(set(ids))} duplicates, status "
          f"{final[0].status if final else 'no successful log'}; load {load_average()}; files in {work}")


if __name__ == "__main__":
    main()
