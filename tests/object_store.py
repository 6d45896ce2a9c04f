"""A real S3 API on this machine for the tests: moto's standalone server on 127.0.0.1, reached through
s3fs exactly as a user's bucket is (credentials and endpoint from the environment)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "coat-test-key",
    "AWS_SECRET_ACCESS_KEY": "coat-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def s3_server(**server_env: str) -> Iterator[str]:
    """A moto S3 server on a free port of 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in server_env}
    os.environ.update(server_env)  # read by moto when the server starts (e.g. its auth switch)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def s3_env(endpoint: str) -> dict[str, str]:
    """What a user sets to reach the bucket: credentials and the endpoint, nothing in any config."""
    return CREDENTIALS | {"AWS_ENDPOINT_URL": endpoint}


def make_bucket(name: str) -> str:
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return f"s3://{name}"
