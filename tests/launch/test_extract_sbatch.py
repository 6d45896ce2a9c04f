"""launch/extract.sbatch run by hand as the tasks of an array: every shard once, re-runs redo only what is missing."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from store_schema.corpus import read_corpus
from store_schema.writer import shard_store_path
from tests.helpers import REPO, cli, subprocess_env

EXTRACT_SBATCH = REPO / "launch" / "extract.sbatch"


def _run_array(corpus: Path, array_id: int, count: int = 4) -> list[str]:
    """Run tasks 0..count-1 one after another, as SLURM would (in any order); their logs."""
    logs = []
    for task in range(count):
        env = {
            **subprocess_env(),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "SLURM_ARRAY_JOB_ID": str(array_id),
            "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_ARRAY_TASK_MIN": "0",
            "COLUMNS": "200",
        }
        args = ["bash", str(EXTRACT_SBATCH), "--corpus", str(corpus), "--expert", "mel", "--workers", "0"]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        logs.append(done.stdout + done.stderr)
    return logs


def _written(log: str) -> list[str]:
    match = re.search(r"^written: (.*)$", log, re.MULTILINE)
    return match[1].split(", ") if match else []


@pytest.fixture
def six_shards(tmp_path) -> Path:
    """18 synthetic clips in 6 shards of 3, so 4 tasks get 2, 2, 1 and 1 shards."""
    cli("synth", "--out", tmp_path / "corpus", "--clips", 18, "--shard-size", 3, "--seed", 3)
    return tmp_path / "corpus"


@pytest.mark.slow
def test_four_tasks_cover_every_shard_once_and_the_last_checks_the_store(six_shards):
    logs = _run_array(six_shards, array_id=501)
    shards = [s.name for s in read_corpus(six_shards).shards]
    written = [_written(log) for log in logs]
    assert [len(w) for w in written] == [2, 2, 1, 1]
    assert sorted(n for w in written for n in w) == sorted(shards)  # each shard once, none twice
    assert all(f"task {i} of 4" in log for i, log in enumerate(logs))
    # only the task that ended last checked the store, and found it sound
    assert ["store is sound" in log for log in logs] == [False, False, False, True]

    # one group lost: the same array again redoes exactly that group, in the task that owns it (3 of 4)
    corpus = read_corpus(six_shards)
    lost = corpus.shards[3]
    shutil.rmtree(shard_store_path(corpus.tar_path(lost)) / "mel")
    again = _run_array(six_shards, array_id=502)
    assert [_written(log) for log in again] == [[], [], [], [lost.name]]
    assert "store is sound" in again[-1]


def test_without_array_variables_or_corpus_it_says_how_to_submit(tmp_path):
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("SLURM_")}
    done = subprocess.run(["bash", str(EXTRACT_SBATCH), "--corpus", str(tmp_path)], env=env, capture_output=True)
    assert done.returncode != 0 and b"sbatch --array=0-N" in done.stderr
    done = subprocess.run(["bash", str(EXTRACT_SBATCH), "--expert", "mel"], env=env, capture_output=True)
    assert done.returncode == 2 and b"pass --corpus DIR" in done.stderr


def test_a_bucket_corpus_keeps_its_marks_where_the_logs_go_and_makes_no_local_url_folder(tmp_path):
    """With --corpus s3://..., the tasks' marks live in the submit folder; nothing named `s3:` appears."""
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    calls = tmp_path / "calls.txt"
    # coat-pipe itself is tested against a real S3 API elsewhere; here only what the script does around it
    (stand_in / "coat-pipe").write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    (stand_in / "coat-pipe").chmod(0o755)
    submit = tmp_path / "submit"
    submit.mkdir()
    for task in range(2):
        env = {
            **subprocess_env(),
            "PATH": f"{stand_in}:{os.environ['PATH']}",
            "SLURM_ARRAY_JOB_ID": "77",
            "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_ARRAY_TASK_COUNT": "2",
            "SLURM_SUBMIT_DIR": str(submit),
        }
        args = ["bash", str(EXTRACT_SBATCH), "--corpus", "s3://bkt/corpus", "--expert", "mel"]
        done = subprocess.run(args, env=env, cwd=submit, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (submit / "coat-extract-77.marks").iterdir()) == ["task-0.done", "task-1.done"]
    assert not list(submit.glob("s3*")) and not list(tmp_path.glob("s3*"))
    assert calls.read_text().splitlines()[-1] == "store check s3://bkt/corpus --expert mel"
