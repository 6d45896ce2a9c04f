"""Killed mid-run then resumed, or run twice at once: the store ends as an uninterrupted run leaves it."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from store_schema.corpus import read_corpus
from store_schema.reader import ShardStore
from tests.helpers import cli, copy_corpus, subprocess_env

EXTRACT = [
    sys.executable,
    "-m",
    "pipeline.cli",
    "extract",
    "--expert",
    "mel,pitch",
    "--no-progress",
    "--batch-seconds",
    "8",
    "--workers",
    "1",
]


def _assert_same_store(a: Path, b: Path) -> None:
    corpus = read_corpus(a)
    for shard in corpus.shards:
        sa, sb = (
            ShardStore(a / shard.name.replace(".tar", ".zarr")),
            ShardStore(b / shard.name.replace(".tar", ".zarr")),
        )
        assert sa.keys == sb.keys
        assert sa.experts() == sb.experts() == ["mel", "pitch"]
        for expert in sa.experts():
            ga, gb = sa.expert(expert), sb.expert(expert)
            for name in ("frames", "clip"):
                np.testing.assert_array_equal(getattr(ga, name)[:], getattr(gb, name)[:])
            np.testing.assert_array_equal(ga.offsets, gb.offsets)
            np.testing.assert_array_equal(ga.status, gb.status)
            assert ga.fingerprint == gb.fingerprint
    for expert in ("mel", "pitch"):
        assert (a / "stats" / f"{expert}.json").read_text() == (b / "stats" / f"{expert}.json").read_text()


def _groups_done(root: Path) -> list[str]:
    return sorted(str(p.parent.parent.relative_to(root)) for p in root.glob("*.zarr/pitch/zarr.json"))


@pytest.mark.slow
def test_sigkill_mid_shard_then_resume(extracted_corpus, synth_corpus, tmp_path):
    corpus = copy_corpus(synth_corpus, tmp_path / "c")
    proc = subprocess.Popen([*EXTRACT, "--corpus", str(corpus)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not _groups_done(corpus) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _groups_done(corpus)
    assert 1 <= len(done) < 3, f"kill did not land mid-run: {done}"  # some shards complete, not all
    kept = {g: (corpus / g / "mel" / "zarr.json").stat().st_mtime_ns for g in done}

    result = cli("extract", "--corpus", corpus, "--expert", "mel,pitch", "--no-progress")
    skipped = int(re.search(r"(\d+) already complete", result.output).group(1))
    assert skipped == len(done)
    assert {g: (corpus / g / "mel" / "zarr.json").stat().st_mtime_ns for g in done} == kept  # not redone
    cli("store", "check", corpus)
    _assert_same_store(corpus, extracted_corpus)


@pytest.mark.slow
def test_two_processes_at_once(extracted_corpus, synth_corpus, tmp_path):
    corpus = copy_corpus(synth_corpus, tmp_path / "c")
    procs = [
        subprocess.Popen(
            [*EXTRACT, "--corpus", str(corpus)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=subprocess_env(COLUMNS="200"),
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    written = [int(re.search(r"shards: (\d+) written", o).group(1)) for o in outputs]
    assert sum(written) == 3, outputs  # every shard written exactly once between them
    cli("store", "check", corpus)
    _assert_same_store(corpus, extracted_corpus)
