"""The ``emeval/progress`` Inspect hook: a run whose output is not a terminal still says how far it got.

Why: without a terminal (CI logs, ``nohup``, notebooks, ``| tee``) Inspect's default display prints
almost nothing until the end, so a ten-minute run looks hung. This hook, registered through the
package's ``inspect_ai`` entry point like :mod:`emeval.sanitize.redact_hook`, is active for every Inspect run
in an environment where emeval is installed -- ``inspect eval evals/x.py``, ``emeval demo``,
``emeval sweep``, ``emeval nightly``, ``emeval audit`` alike -- and writes to stderr, at most every
:data:`DEFAULT_INTERVAL_S` seconds per running task, a line such as::

    progress: free_form [openai-api/subject/m] 40/160 samples, 2.1/s, ETA 57 s

plus one line when a task starts and one when it ends. The lines come from a timer, not from
finishing samples, so a stalled run keeps reporting (its rate falls, its ETA grows).

``EMEVAL_PROGRESS`` decides: unset, the hook is on when stdout is not a terminal; a number of
seconds turns it on at that cadence (also in a terminal); ``0`` turns it off.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

from inspect_ai.hooks import Hooks, SampleEnd, TaskEnd, TaskStart, hooks

PROGRESS_ENV = "EMEVAL_PROGRESS"
DEFAULT_INTERVAL_S = 30.0


def progress_interval() -> float | None:
    """Seconds between progress lines, or None when the hook is off (see the module docstring)."""
    raw = os.environ.get(PROGRESS_ENV, "").strip()
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            raise ValueError(f"{PROGRESS_ENV}={raw!r}: expected a number of seconds (0 turns progress off)") from None
        return seconds if seconds > 0 else None
    return None if sys.stdout.isatty() else DEFAULT_INTERVAL_S


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class TaskProgress:
    """One running task: what it is, how many samples it will run, how many have ended."""

    label: str
    total: int
    started: float
    done: int = 0

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        head = f"progress: {self.label} {self.done}/{self.total} samples"
        if self.done == 0:
            return f"{head}, {duration_text(elapsed)} elapsed"
        rate = self.done / elapsed
        speed = f"{rate:.2g}/s" if rate >= 0.1 else f"{rate * 60:.2g}/min"
        left = max(self.total - self.done, 0)
        return f"{head}, {speed}, ETA {duration_text(left / rate)}"


def sample_count(data: TaskStart) -> int:
    """Samples the task will run: its (limited) sample ids times its epochs."""
    dataset = data.spec.dataset
    samples = len(dataset.sample_ids) if dataset.sample_ids else (dataset.samples or 0)
    return samples * (data.spec.config.epochs or 1)


@hooks(name="emeval/progress", description="emeval: progress lines (samples, rate, ETA) when output is not a terminal")
class ProgressLines(Hooks):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskProgress] = {}
        self._ticker: threading.Thread | None = None

    def enabled(self) -> bool:
        return progress_interval() is not None

    async def on_task_start(self, data: TaskStart) -> None:
        task = TaskProgress(f"{data.spec.task} [{data.spec.model}]", sample_count(data), time.monotonic())
        with self._lock:
            self._tasks[data.eval_id] = task
            if self._ticker is None or not self._ticker.is_alive():
                self._ticker = threading.Thread(target=self._tick, name="emeval-progress", daemon=True)
                self._ticker.start()
        emit(f"progress: {task.label} started, {task.total} samples")

    async def on_sample_end(self, data: SampleEnd) -> None:
        with self._lock:
            task = self._tasks.get(data.eval_id)
            if task is not None:
                task.done += 1

    async def on_task_end(self, data: TaskEnd) -> None:
        with self._lock:
            task = self._tasks.pop(data.eval_id, None)
        if task is not None:
            elapsed = time.monotonic() - task.started
            emit(f"progress: {task.label} {data.log.status}, {task.done}/{task.total} samples "
                 f"in {duration_text(elapsed)}")

    def _tick(self) -> None:
        """Print each running task's line every interval; end when no task is running."""
        while True:
            time.sleep(progress_interval() or DEFAULT_INTERVAL_S)
            with self._lock:
                if not self._tasks:
                    self._ticker = None
                    return
                now = time.monotonic()
                lines = [task.line(now) for task in self._tasks.values()]
            for line in lines:
                emit(line)


def emit(line: str) -> None:
    """stderr, so that a command's own output on stdout (a table, JSON) stays clean."""
    print(line, file=sys.stderr, flush=True)
