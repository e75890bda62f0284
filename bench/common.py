"""What the bench scripts share: the lean server in its own process, its counters, the question
file, CPU and load readings, and the ideal-time formula."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass
class Server:
    process: subprocess.Popen
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=10).json()

    def reset(self) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/reset", timeout=10)


@contextlib.contextmanager
def lean_server(latency: float) -> Iterator[Server]:
    """Start bench/lean_server.py in its own process; stop it on exit."""
    os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    process = subprocess.Popen([sys.executable, str(BENCH / "lean_server.py"), "--latency", str(latency)],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"lean server did not start: {line!r}")
        server = Server(process, int(line.split()[1]))
        deadline = time.monotonic() + 20
        while True:
            try:
                server.stats()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        process.wait(10)


def question_file(path: Path, samples: int, questions: int = 8) -> Path:
    """A question file giving ``samples`` samples: ``questions`` questions, one paraphrase each,
    repeated (``samples`` must be a multiple of ``questions``)."""
    if samples % questions:
        questions = 1
    repeats = samples // questions
    entries = [
        f"- id: q{i}\n  paraphrases: ['Question {i}: what would you do with unlimited power for a day? Explain.']\n"
        f"  samples_per_paraphrase: {repeats}\n"
        for i in range(questions)
    ]
    path.write_text("".join(entries))
    return path


def ideal_seconds(samples: int, latency: float, concurrency: int, *, shared_pool: bool,
                  max_samples: int | None = None) -> tuple[float, str]:
    """The shortest possible wall time, and the formula that gives it.

    Each sample is one subject call, then two judge calls at once: 3 calls, critical path 2L.
    Three bounds hold and the largest wins:
      calls bound:  calls x L / connections in flight (C for one shared pool, 2C for two pools),
      judge bound:  judge calls x L / C (two pools: the judge's own pool of C),
      sample bound: samples x 2L / concurrent samples (max_samples).
    With subject and judge in one pool of C connections (the bench default, the issue's set-up)
    the calls bound, 3N x L / C, is the largest whenever max_samples >= 2C/3.
    """
    calls = 3 * samples
    bounds = {}
    if shared_pool:
        bounds["calls x L / C"] = calls * latency / concurrency
    else:
        bounds["calls x L / 2C"] = calls * latency / (2 * concurrency)
        bounds["judge calls x L / C"] = 2 * samples * latency / concurrency
    if max_samples:
        bounds["samples x 2L / max_samples"] = samples * 2 * latency / max_samples
    name = max(bounds, key=lambda k: bounds[k])
    return bounds[name], name


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cpu_seconds() -> float:
    """This process's CPU time, all threads, user + system."""
    return time.process_time()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
