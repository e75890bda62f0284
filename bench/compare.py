"""Compare harness configurations: each run in a fresh process, rounds interleaved, medians printed.

    python bench/compare.py [--rounds 3] [--samples 800] [--only NAME ...]

The configurations (CONFIGS below) go from a straightforward Inspect run to the recommended
settings, one change at a time, then the bench-only patches that stand for upstream Inspect
changes. Interleaving the rounds (A B C A B C ...) spreads the load of a shared machine evenly.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from common import BENCH, load_average, median

FAST = ["--set", "log_realtime=false", "--set", "score_display=false", "--set", "log_model_api=false"]
FREEZE = ["--gc", "freeze"]
UPSTREAM = ["--patch", "retry-without-cycle", "--patch", "no-acp-session"]
# (name, harness arguments, run under a pseudo-terminal): cumulative unless the name says otherwise
CONFIGS: list[tuple[str, list[str], bool]] = [
    ("straightforward: defaults, full display on a tty", ["--set", "display=full"], True),
    ("display=none", [], False),
    ("  emeval before this change [bench]", ["--patch", "emeval-before"], False),
    ("+ log_realtime=false", ["--set", "log_realtime=false"], False),
    ("+ score_display=false", ["--set", "log_realtime=false", "--set", "score_display=false"], False),
    ("+ log_model_api=false", FAST, False),
    ("  + INSPECT_TRACE_LEVEL=warning", [*FAST, "--env", "INSPECT_TRACE_LEVEL=warning"], False),
    ("  + log_buffer=100", [*FAST, "--set", "log_buffer=100"], False),
    ("+ retry wrapper without cycle [upstream]", [*FAST, UPSTREAM[0], UPSTREAM[1]], False),
    ("+ no per-sample ACP session [upstream]", [*FAST, *UPSTREAM], False),
    ("+ gc.freeze() after start-up [upstream]", [*FAST, *UPSTREAM, *FREEZE], False),
    ("  gc.freeze() alone, no cycle fix [bench]", [*FAST, *FREEZE], False),
    ("  gc disabled instead (bound; leaks) [bench]", [*FAST, "--gc", "disable"], False),
    # wall and CPU of shard processes count Python start-up and imports (the rows above do not)
    ("recommended, 2 shard processes", [*FAST, "--processes", "2"], False),
    ("recommended, 2 shard processes + upstream", [*FAST, *UPSTREAM, "--processes", "2"], False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=800)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--only", nargs="*", help="run only configurations whose names contain one of these")
    parser.add_argument("--table", nargs="+", metavar="DIR",
                        help="run nothing: print the medians over the raw runs in these folders (full runs only)")
    args = parser.parse_args()
    if args.table:
        table([Path(d) for d in args.table], CONFIGS, args.samples, args.latency, args.concurrency)
        return
    chosen = [c for c in CONFIGS if not args.only or any(p in c[0] for p in args.only)]
    out = Path(tempfile.mkdtemp(prefix="emeval-compare-"))
    print(f"{len(chosen)} configurations x {args.rounds} rounds, {args.samples} samples, C={args.concurrency}, "
          f"L={args.latency}s; load {load_average()}", flush=True)
    for round_ in range(args.rounds):
        for i, (name, extra, tty) in enumerate(chosen):
            command = [sys.executable, str(BENCH / "harness.py"), "--samples", str(args.samples),
                       "--concurrency", str(args.concurrency), "--latency", str(args.latency),
                       "--json", str(out / f"{i}.jsonl"), *extra]
            if tty:  # a terminal, as for a user at a shell (util-linux `script` provides the pty)
                command = ["script", "-qec", shlex.join(command), "/dev/null"]
            done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if done.returncode:
                print(f"  {name}: failed\n{done.stdout[-2000:]}{done.stderr[-3000:]}", flush=True)
                continue
            last = json.loads((out / f"{i}.jsonl").read_text().splitlines()[-1])
            print(f"  round {round_ + 1} {name}: ratio {last['ratio']:.3f}, {last['cpu_ms_per_call']:.2f} ms/call, "
                  f"load {last['load']}", flush=True)
    table([out], chosen, args.samples, args.latency, args.concurrency)


def table(folders: list[Path], chosen: list, samples: int, latency: float, concurrency: int) -> None:
    """Medians per configuration over the runs in ``folders`` (``<index>.jsonl`` per configuration)."""
    print(f"\nmedians (ratio = ideal / wall; ideal = 3N x L / C = {3 * samples * latency / concurrency:.2f}s; "
          f"CPU = the eval process's, per model call; GC = CPU seconds in the garbage collector)")
    print(f"{'configuration':46s} {'runs':>4s} {'ratio':>6s} {'wall s':>7s} {'CPU ms/call':>11s} {'start-up s':>10s} "
          f"{'calling ratio':>13s} {'finish s':>8s} {'GC s':>6s}")
    for i, (name, _, _) in enumerate(chosen):
        runs = [json.loads(line) for folder in folders if (folder / f"{i}.jsonl").exists()
                for line in (folder / f"{i}.jsonl").read_text().splitlines()]
        if not runs:
            continue

        def m(key: str, runs=runs) -> float:
            return median([r[key] for r in runs])

        print(f"{name:46s} {len(runs):4d} {m('ratio'):6.3f} {m('wall'):7.1f} {m('cpu_ms_per_call'):11.2f} "
              f"{m('startup'):10.2f} {m('active_ratio'):13.3f} {m('finish'):8.2f} {m('gc_s'):6.1f}")
    loads = [r["load"] for folder in folders for f in folder.glob("*.jsonl") for r in map(json.loads, f.read_text().splitlines())]
    one_minute = sorted(float(load.split()[0]) for load in loads)
    print(f"1-minute load average during the runs: {one_minute[0]:.1f} .. {one_minute[-1]:.1f} "
          f"(median {median(one_minute):.1f}); raw runs in {', '.join(map(str, folders))}")


if __name__ == "__main__":
    main()
