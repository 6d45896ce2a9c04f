"""Corpus and store in an object store (moto's S3 server through s3fs), against the same on local disk."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from store_schema.corpus import read_corpus
from store_schema.location import corpus_path
from store_schema.reader import ShardStore
from tests.helpers import cli, subprocess_env
from tests.object_store import s3_env

SYNTH = ["--clips", 12, "--shard-size", 4, "--seed", 3]


def _groups(corpus) -> dict:
    """Every stored array of every shard's groups, by shard, expert and array."""
    out = {}
    for shard in corpus.shards:
        store = ShardStore.for_tar(corpus.tar_path(shard))
        out[shard.name] = {"keys": store.keys}
        for expert in store.experts():
            group = store.expert(expert)
            out[shard.name][expert] = {n: group.array(n)[:] for n in ("frames", "clip", "offsets", "status")}
    return out


def _assert_same_store(a, b) -> None:
    ga, gb = _groups(read_corpus(a)), _groups(read_corpus(b))
    assert ga.keys() == gb.keys()
    for shard in ga:
        assert ga[shard]["keys"] == gb[shard]["keys"]
        assert ga[shard].keys() == gb[shard].keys()
        for expert in set(ga[shard]) - {"keys"}:
            for name, values in ga[shard][expert].items():
                np.testing.assert_array_equal(values, gb[shard][expert][name], err_msg=f"{shard} {expert} {name}")


def test_synth_extract_check_and_info_in_a_bucket_equal_local_disk(bucket, tmp_path):
    url = f"{bucket}/train"
    for where in (url, tmp_path / "train"):
        cli("synth", "--out", where, *SYNTH)
        cli("extract", "--corpus", where, "--expert", "mel,pitch", "--workers", 2, "--no-progress")
    cli("store", "check", url)
    info = cli("store", "info", url).output
    assert f"{url}: 3 shards, 12 clips" in info
    _assert_same_store(url, tmp_path / "train")
    remote, local = (corpus_path(p) / "stats" / "mel.json" for p in (url, tmp_path / "train"))
    assert json.loads(remote.read_text())["frames"] == json.loads(local.read_text())["frames"]
    # a second run skips every complete group, as on disk
    again = cli("extract", "--corpus", url, "--expert", "mel,pitch", "--workers", 0, "--no-progress").output
    assert "0 written, 3 already complete" in again


def test_credentials_never_reach_the_store_or_the_output(bucket):
    url = f"{bucket}/c"
    out = cli("synth", "--out", url, *SYNTH).output
    out += cli("extract", "--corpus", url, "--expert", "mel", "--workers", 0, "--no-progress").output
    fs = corpus_path(url).fs
    everything = b"".join(fs.cat(p) for p in fs.find(corpus_path(url).path))
    for secret in ("coat-test-secret", "coat-test-key"):
        assert secret.encode() not in everything and secret not in out


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://no-such-bucket-here/corpus", "not found"),
    ],
)
def test_a_missing_bucket_is_one_line_naming_the_url(s3_endpoint, url, says):
    result = cli("store", "check", url, expect=2)
    assert url in result.output and says in result.output and "Traceback" not in result.output


def _coat_pipe(env: dict, *args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("coat-pipe")), *args]
    return subprocess.run(command, env=subprocess_env(**env), capture_output=True, text=True, timeout=120)


def test_wrong_credentials_and_an_unreachable_endpoint_are_one_line_each(tmp_path):
    # A server that checks signatures (moto's IAM auth on from its first request): these keys are unknown.
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        env=subprocess_env(INITIAL_NO_AUTH_ACTION_COUNT="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        denied = _coat_pipe(s3_env(f"http://127.0.0.1:{port}"), "store", "info", "s3://bkt/corpus")
    finally:
        server.terminate()
        server.wait()
    unreachable = _coat_pipe(s3_env(f"http://127.0.0.1:{port}"), "synth", "--out", "s3://bkt/corpus")
    for done in (denied, unreachable):
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "s3://bkt/corpus" in lines[0], done.stderr
        assert "coat-test-secret" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert "access denied" in denied.stderr or "refused" in denied.stderr
    assert "did not answer" in unreachable.stderr
