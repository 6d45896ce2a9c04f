"""Helpers the tests share: the in-process CLI, a child's environment, corpus copies, where data lives."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from typer.testing import CliRunner, Result

from pipeline.cli import app

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


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data. Missing: the test is skipped on a developer's machine, and fails in CI
    (`CI` set), where a missing data folder would otherwise turn real-data tests into silent skips."""
    import pytest

    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"shared data not found at {path} (set COAT_PIPE_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def stop_during_first_training(command: list[str], metrics: Path, run: str) -> None:
    """Start a quickstart `command`, send it SIGTERM once the run whose metrics.jsonl is `metrics` has logged
    two rows, and check it stops in one line naming `run` (training checkpoints first)."""
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    deadline = time.monotonic() + 600
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2) and first.poll() is None:
        assert time.monotonic() < deadline, "the first training never logged a step"
        time.sleep(0.1)
    # SIGTERM takes Ctrl-C's path (SIGINT itself is ignored in a background job, as under `nohup … &`)
    first.send_signal(signal.SIGTERM)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 2, stdout + stderr
    assert f"interrupted while training {run}" in stderr and "Traceback" not in stderr
