"""Shared fixtures: a small synthetic corpus (raw and extracted), the shared real speech, the tiny-twin cache.

The helpers the tests import live in tests/helpers.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("COLUMNS", "160")  # rich reads it when the CLI's consoles are made: fewer wrapped lines

import stages.lab  # noqa: E402, F401 - as the CLI does: the synth benchmark, the twins' task words
from tests.helpers import cli, copy_corpus, shared_data  # noqa: E402 - after COLUMNS, which the CLI's import reads


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """18 synthetic clips in 3 shards, not extracted. Copy before changing it."""
    root = tmp_path_factory.mktemp("synth") / "corpus"
    cli("synth", "--out", root, "--clips", 18, "--shard-size", 6, "--seed", 3)
    return root


@pytest.fixture(scope="session")
def extracted_corpus(synth_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic corpus with mel and pitch extracted (2 decoding workers). Copy before changing it."""
    root = copy_corpus(synth_corpus, tmp_path_factory.mktemp("extracted") / "corpus")
    cli("extract", "--corpus", root, "--expert", "mel,pitch", "--workers", 2, "--no-progress")
    return root


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    return shared_data("speech")


@pytest.fixture(scope="session", autouse=True)
def tiny_twin_cache(tmp_path_factory):
    """Tiny twins are built offline into a fresh cache for the session, through the real save/load path."""
    mp = pytest.MonkeyPatch()
    mp.setenv("COAT_PIPE_CACHE", str(tmp_path_factory.mktemp("coat-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server for the session, its credentials and endpoint in this process's environment (and
    so in every child's)."""
    pytest.importorskip("s3fs", reason="object-store tests need the cloud extra (in dev)")
    from tests.object_store import s3_env, s3_server

    mp = pytest.MonkeyPatch()
    with s3_server() as endpoint:
        for key, value in s3_env(endpoint).items():
            mp.setenv(key, value)
        yield endpoint
    mp.undo()


@pytest.fixture
def bucket(s3_endpoint, request) -> str:
    """A fresh bucket per test: s3://NAME."""
    from tests.object_store import make_bucket

    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    return make_bucket(name)
