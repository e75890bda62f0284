"""Where the eval process's CPU goes, by category, from a py-spy raw profile.

    py-spy record -r 200 -f raw -o /tmp/spy.txt -- python bench/harness.py ...
    python bench/spy_categories.py /tmp/spy.txt

Each stack sample goes to the innermost frame that matches a category below (so pydantic work
inside log condensing counts as condensing, and the openai SDK inside Inspect's model layer
counts as the HTTP client). Idle samples (the event loop waiting in epoll) are reported apart.
"""

from __future__ import annotations

import sys
from collections import Counter

# (category, substrings of a frame's "function (file:line)" text); first match from the leaf up wins
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("import (one-off)", ("<frozen importlib._bootstrap", "_find_and_load")),
    ("idle (epoll wait)", ("select (selectors.py", "epoll")),
    ("trace logging (Inspect's trace file)", ("_util/trace.py", "logging/__init__.py", "_util/logger.py")),
    ("ACP session event mapping (per sample)", ("inspect_ai/agent/_acp/",)),
    ("realtime buffer database (log_realtime)", ("_recorders/buffer/",)),
    ("log condensing (condense_sample)", ("inspect_ai/log/_condense.py", "inspect_ai/_util/json.py",
                                          "inspect_ai/event/_pool.py")),
    ("log writing (.eval zip, flush)", ("_recorders/eval.py", "_eval/task/log.py", "zipfile", "zlib")),
    ("metrics and display (score_display, results)", ("_eval/task/results.py", "inspect_ai/_display/",
                                                       "inspect_ai/scorer/_metric", "emeval/stats/metrics.py")),
    ("emeval (judge prompts, scorer, solver)", ("/emeval/",)),
    ("judge cache (Inspect's model cache)", ("inspect_ai/model/_cache.py",)),
    ("HTTP client (openai SDK, httpx, sockets)", ("/openai/", "/httpx", "/httpcore", "anyio/_backends/_asyncio.py",
                                                   "asyncio/selector_events.py", "anyio/streams")),
    ("transcript events (create, notify)", ("inspect_ai/log/_transcript.py", "inspect_ai/event/")),
    ("Inspect model layer (generate, retries, conversion)", ("inspect_ai/model/", "tenacity/")),
    ("Inspect sample runner (task/run, state, spans)", ("inspect_ai/_eval/", "inspect_ai/solver/", "inspect_ai/scorer/",
                                                         "inspect_ai/util/", "inspect_ai/log/")),
]


def category_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        text = frame.replace("(", "(/")  # py-spy prints site-packages paths relative: "(openai/_client.py:1)"
        for name, needles in CATEGORIES:
            if any(n in text for n in needles):
                return name
    return "other (event loop, pydantic, stdlib)"


def main(path: str) -> None:
    counts: Counter[str] = Counter()
    total = 0
    for line in open(path, encoding="utf-8"):
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        counts[category_of(stack.split(";"))] += count
    busy = total - counts["idle (epoll wait)"]
    print(f"{total} samples, {busy} busy (not waiting in epoll)")
    for name, count in counts.most_common():
        share = f"{count / busy * 100:5.1f}% of busy" if name != "idle (epoll wait)" else "            "
        print(f"  {share}  {count:6d}  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
