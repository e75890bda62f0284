"""Shared test fixtures.

Fixture modules beside this file are loaded as plugins; fixtures small enough to read at a glance
live here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from doubles.loopback import LoopbackServer, Policy

pytest_plugins = ["shared_fixtures"]


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
