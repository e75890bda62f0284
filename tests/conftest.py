"""Shared test fixtures.

Fixture modules beside this file are loaded as plugins; fixtures small enough to read at a glance
live here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from loopback import LoopbackServer, Policy

pytest_plugins = ["shared_fixtures"]

HEAVIEST_FILES = [
    "test_documented_commands.py", "test_scale_out.py", "test_first_hour.py", "test_machiavelli.py",
    "test_embedded_eval.py", "test_bad_inputs.py", "test_truthfulqa.py", "test_resume.py", "test_audit.py",
    "test_nightly.py", "test_unfinished_logs.py", "test_judge_validation.py", "test_sweep.py",
]
"""Test files by CPU cost, heaviest first (``bench/pytest_cpu.py`` measures it; bench/README.md). With
``--no-loadscope-reorder`` xdist hands files to its workers in collection order, so starting the long
files first keeps one from running alone at the end (ordering by test count put them last)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVIEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept


@pytest.fixture
def loopback(monkeypatch) -> Iterator[Callable[[Policy], LoopbackServer]]:
    """Start loopback OpenAI-compatible servers: ``server = loopback(policy)``; all stop at teardown.

    Loopback traffic bypasses any HTTP proxy the environment names, so it stays on 127.0.0.1.
    """
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"])))
    servers: list[LoopbackServer] = []

    def start(policy: Policy) -> LoopbackServer:
        server = LoopbackServer(policy).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
