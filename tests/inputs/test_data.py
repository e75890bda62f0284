"""Pinned downloads: mirror, cache, checksum and offline behaviour, over real loopback HTTP."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
from functools import partial
from pathlib import Path

import pytest

from emeval.inputs.data import FILES, DataError, PinnedFile, fetch


@pytest.fixture
def file_server(tmp_path: Path):
    """A static file server on loopback (stdlib), serving ``tmp_path / 'www'``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pinned(url: str, content: bytes, name: str = "q.yaml") -> PinnedFile:
    return PinnedFile("test-source", name, url, hashlib.sha256(content).hexdigest(), "r" * 40)


@pytest.fixture
def no_mirror(monkeypatch, tmp_path):
    monkeypatch.delenv("EMEVAL_DATA_DIR", raising=False)
    monkeypatch.setenv("EMEVAL_CACHE_DIR", str(tmp_path / "cache"))


def test_download_is_verified_then_served_from_cache_offline(no_mirror, file_server):
    root, base = file_server
    content = b"- id: a\n  paraphrases: [hi]\n"
    (root / "q.yaml").write_bytes(content)
    pinned = _pinned(f"{base}/q.yaml", content)
    first = fetch(pinned)
    assert first.read_bytes() == content
    (root / "q.yaml").unlink()  # upstream gone: the cache must serve it
    assert fetch(pinned) == first


def test_download_with_wrong_checksum_is_an_error(no_mirror, file_server):
    root, base = file_server
    (root / "q.yaml").write_bytes(b"tampered")
    pinned = _pinned(f"{base}/q.yaml", b"the pinned content")
    with pytest.raises(DataError, match=r"test-source/q.yaml: checksum mismatch"):
        fetch(pinned)


def test_offline_with_no_cache_names_the_file_and_the_way_out(no_mirror):
    pinned = _pinned(f"http://127.0.0.1:{_closed_port()}/q.yaml", b"x")
    with pytest.raises(DataError) as info:
        fetch(pinned)
    message = str(info.value)
    assert "test-source/q.yaml" in message and "no cached copy" in message
    assert "EMEVAL_DATA_DIR" in message


def test_mirror_files_are_checked(monkeypatch, tmp_path, shared_data):
    mirror = tmp_path / "mirror"
    pinned = FILES["emergent-misalignment/first_plot_questions.yaml"]
    target = mirror / pinned.source / pinned.path
    target.parent.mkdir(parents=True)
    shutil.copy(shared_data / pinned.source / pinned.path, target)
    monkeypatch.setenv("EMEVAL_DATA_DIR", str(mirror))
    assert fetch(pinned) == target
    target.write_text(target.read_text() + "\n# edited\n")
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(pinned)
    target.unlink()
    with pytest.raises(DataError, match="not found in the mirror"):
        fetch(pinned)


def test_shared_mirror_holds_every_pinned_file(monkeypatch, shared_data):
    monkeypatch.setenv("EMEVAL_DATA_DIR", str(shared_data))
    for pinned in FILES.values():
        assert fetch(pinned).is_file()
