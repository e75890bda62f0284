"""Where logs live: a local folder or any fsspec URL (``s3://bucket/prefix``, ``gs://...``).

Why one module: a sharded run writes into one store that every reader must accept as given. A URL
must stay a string (``Path("s3://b/x")`` collapses to ``s3:/b/x``), a local path stays a ``Path``;
both go through fsspec, the filesystem layer Inspect itself reads and writes logs with. What emeval
writes beside logs (a sweep's ``sweep.json``, curves and plots) goes through ``write_bytes``, whole.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec


def is_url(location: str | Path) -> bool:
    """True for ``scheme://...`` other than ``file://`` (which is a local path)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def as_location(location: str | Path) -> str | Path:
    """A URL as its text, anything else as a local ``Path`` (``file://`` prefix dropped)."""
    text = str(location)
    return text if is_url(text) else Path(text.removeprefix("file://"))


def same_location(a: str | Path, b: str | Path) -> bool:
    """Whether two locations name the same log: URLs by their text, local paths once resolved."""
    if is_url(a) or is_url(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def join(root: str | Path, *parts: str) -> str:
    """``root/part/...`` for a URL or a local folder, as text (what Inspect takes as ``log_dir``)."""
    return "/".join([str(root).rstrip("/"), *parts]) if is_url(root) else str(Path(root, *parts))


def kind(location: str | Path) -> str | None:
    """``"directory"``, ``"file"`` or None (nothing there), through the location's filesystem."""
    if not is_url(location):
        path = Path(location)
        return "directory" if path.is_dir() else "file" if path.is_file() else None
    fs, inner = fsspec.core.url_to_fs(str(location))
    fs.invalidate_cache()  # another process (a shard) may have written since this process last listed
    if fs.isdir(inner):
        return "directory"
    return "file" if fs.isfile(inner) else None


def write_bytes(location: str | Path, data: bytes) -> None:
    """Write a whole file so that no reader, and no other process writing the same file, sees half of
    it: a local file is written under a name private to this process (pid and a random part) and
    renamed into place (atomic); an object store's upload (s3://, gs://) replaces the object whole."""
    if is_url(location):
        with fsspec.open(str(location), "wb") as f:
            f.write(data)
        return
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(location: str | Path, text: str) -> None:
    """``write_bytes`` of ``text`` in UTF-8."""
    write_bytes(location, text.encode("utf-8"))


def remove(location: str | Path) -> None:
    """Delete a file if it is there."""
    if not is_url(location):
        Path(location).unlink(missing_ok=True)
        return
    fs, inner = fsspec.core.url_to_fs(str(location))
    try:
        fs.rm_file(inner)
    except FileNotFoundError:
        pass
