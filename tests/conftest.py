"""Shared fixtures: the CLI runner, a small extracted synthetic corpus, the shared real speech."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("COLUMNS", "160")  # rich reads it when the CLI's consoles are made: fewer wrapped lines

from typer.testing import CliRunner, Result  # noqa: E402

from pipeline.cli import app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COAT_PIPE_SHARED_DATA", REPO.parent / "shared" / "data"))


DISTRIBUTED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child, minus the rendezvous variables an in-process training
    run leaves behind (its store still holds that port), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    return env | extra


def cli(*args: object, expect: int | None = 0) -> Result:
    """Run `coat-pipe ARGS` in-process; check the exit code unless `expect` is None."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"coat-pipe {' '.join(map(str, args))} raised {result.exception!r}") from result.exception
    if expect is not None and result.exit_code != expect:
        raise AssertionError(
            f"coat-pipe {' '.join(map(str, args))} exited {result.exit_code}, expected {expect}\n"
            f"{result.output}\n{result.exception!r}"
        )
    return result


def extract_one_shard_with_other_options(corpus: Path, index: int) -> None:
    """Re-extract `mel` for shard `index` of 3 with 64 bins: a group whose fingerprint differs."""
    cli(
        "extract",
        "--corpus",
        corpus,
        "--expert",
        "mel",
        "--set",
        "mel.n_mels=64",
        "--overwrite",
        "--shard-index",
        index,
        "--num-shards",
        3,
        "--no-progress",
    )


def copy_corpus(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".coat-locks"))
    return dst


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
    path = SHARED_DATA / "speech"
    if not path.is_dir():
        pytest.skip(f"shared speech data not found at {path} (set COAT_PIPE_SHARED_DATA)")
    return path


@pytest.fixture(scope="session", autouse=True)
def tiny_twin_cache(tmp_path_factory):
    """Tiny twins are built offline into a fresh cache for the session, through the real save/load path."""
    mp = pytest.MonkeyPatch()
    mp.setenv("COAT_PIPE_CACHE", str(tmp_path_factory.mktemp("coat-cache")))
    yield
    mp.undo()
