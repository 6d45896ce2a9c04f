"""A real S3 API on this machine for the tests: moto's standalone server (`moto_server`, its own process)
on 127.0.0.1, reached through s3fs exactly as a user's bucket is (credentials and endpoint from the
environment).

Its own process, not moto's in-process threaded server: the tests run extractions in-process whose
DataLoader workers are forked, and a fork taken while a server thread holds a lock leaves the child
waiting on it forever."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import subprocess_env

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "coat-test-key",
    "AWS_SECRET_ACCESS_KEY": "coat-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


@contextmanager
def s3_server(**server_env: str) -> Iterator[str]:
    """`moto_server` on a free port of 127.0.0.1, with `server_env` in its environment (e.g. its auth
    switch); yields its endpoint URL once it accepts connections, and stops it on the way out."""
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        env=subprocess_env(**server_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start on 127.0.0.1:{port} (exit {server.poll()})")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def s3_env(endpoint: str) -> dict[str, str]:
    """What a user sets to reach the bucket: credentials and the endpoint, nothing in any config."""
    return CREDENTIALS | {"AWS_ENDPOINT_URL": endpoint}


def make_bucket(name: str) -> str:
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return f"s3://{name}"
