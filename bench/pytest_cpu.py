"""A pytest plugin that prints the CPU seconds each test file costs (user + sys, children included).

Why: CI has a 20-minute budget on 2 cores, and the machines these tests are written on are shared
and loaded, so wall time says little about what a file will cost on a quiet CI runner. CPU seconds
do (they still rise somewhat with load: contention for caches and memory bandwidth).

Each test's cost is ``getrusage(RUSAGE_SELF) + getrusage(RUSAGE_CHILDREN)`` after its teardown
minus before its setup: threads of the test process (loopback servers) and waited-for subprocesses
(``inspect eval``, ``emeval``) included. A session or module fixture is charged to the first test
that uses it. Under pytest-xdist each worker measures its own tests (one at a time) and also its
whole-process total, so start-up and collection show up as ``(worker overhead)``.

Usage (from the repository root)::

    PYTHONPATH=bench python -m pytest -p pytest_cpu [--cpu-log cpu.jsonl] [pytest args]

It prints the files by CPU at the end; ``--cpu-log`` also keeps one JSON line per test.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest


def _cpu() -> tuple[float, float]:
    user = sys_ = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        user += usage.ru_utime
        sys_ += usage.ru_stime
    return user, sys_


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-log", default=None, help="JSON lines file for each test's CPU seconds (pytest_cpu)")


def pytest_configure(config: pytest.Config) -> None:
    worker = getattr(config, "workerinput", None)
    if worker is None:  # the controller (or a run without xdist) picks the file and tells the workers
        path = config.getoption("--cpu-log") or tempfile.mkstemp(prefix="pytest-cpu-", suffix=".jsonl")[1]
        Path(path).write_text("")
        config._cpu_log = path  # type: ignore[attr-defined]
    else:
        config._cpu_log = worker["cpu_log"]  # type: ignore[attr-defined]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist: hand the log path to each worker
    node.workerinput["cpu_log"] = node.config._cpu_log


def _append(config: pytest.Config, record: dict) -> None:
    with open(config._cpu_log, "a") as f:  # type: ignore[attr-defined]
        f.write(json.dumps(record) + "\n")  # one short line per write: appends do not interleave


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    user, sys_ = _cpu()
    yield
    user2, sys2 = _cpu()
    _append(item.config, {"test": item.nodeid, "file": item.nodeid.split("::")[0], "user": user2 - user,
                          "sys": sys2 - sys_, "worker": os.environ.get("PYTEST_XDIST_WORKER", "main")})


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or not hasattr(config, "_cpu_log"):
        if hasattr(config, "workerinput"):
            user, sys_ = _cpu()
            _append(config, {"worker_total": os.environ.get("PYTEST_XDIST_WORKER"), "user": user, "sys": sys_})
        return
    if os.environ.get("PYTEST_XDIST_WORKER") is None and not config.pluginmanager.hasplugin("dsession"):
        user, sys_ = _cpu()
        _append(config, {"worker_total": "main", "user": user, "sys": sys_})


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    records = [json.loads(line) for line in Path(config._cpu_log).read_text().splitlines() if line]  # type: ignore[attr-defined]
    per_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    per_test = []
    for r in records:
        if "file" in r:
            per_file[r["file"]][0] += r["user"]
            per_file[r["file"]][1] += r["sys"]
            per_test.append((r["user"] + r["sys"], r["test"]))
    in_tests = sum(u + s for u, s in per_file.values())
    totals = [r for r in records if "worker_total" in r]
    whole = sum(r["user"] + r["sys"] for r in totals)
    write = terminalreporter.write_line
    terminalreporter.section("CPU seconds per file (user + sys, children included)")
    for file, (u, s) in sorted(per_file.items(), key=lambda kv: -sum(kv[1])):
        write(f"{u + s:9.1f}  (user {u:8.1f}, sys {s:7.1f})  {file}")
    if totals:
        write(f"{whole - in_tests:9.1f}  (worker overhead: start-up, collection; {len(totals)} process(es))")
    write(f"{whole or in_tests:9.1f}  total" + ("" if totals else " (in tests)"))
    write("most expensive tests:")
    for cost, test in sorted(per_test, reverse=True)[:10]:
        write(f"{cost:9.1f}  {test}")
    write(f"per-test records: {config._cpu_log}")  # type: ignore[attr-defined]
