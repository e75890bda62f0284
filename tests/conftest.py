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

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # pytest-xdist already runs one worker per CPU. A torch (OpenMP) team of one thread per CPU in every
    # worker, and in every `inspect eval` a test starts, would oversubscribe the CPUs, and OpenMP threads
    # spin-wait for each other (the cost tests/test_truthfulqa.py's one_torch_thread measured). Each
    # worker, and what it starts, gets its share instead; set OMP_NUM_THREADS yourself to override.
    # Set here, before any test module imports torch.
    _share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))


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
