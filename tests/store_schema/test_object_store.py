"""Corpus and store in an object store (moto's S3 server through s3fs), against the same on local disk."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from store_schema.check import check_store
from store_schema.corpus import read_corpus
from store_schema.location import corpus_path
from store_schema.reader import ShardStore
from tests.helpers import cli, subprocess_env
from tests.object_store import s3_env, s3_server

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_wrong_credentials_and_an_unreachable_endpoint_are_one_line_each(tmp_path):
    # A server that checks signatures (moto's IAM auth on from its first request): these keys are unknown.
    with s3_server(INITIAL_NO_AUTH_ACTION_COUNT="0") as endpoint:
        denied = _coat_pipe(s3_env(endpoint), "store", "info", "s3://bkt/corpus")
    unreachable = _coat_pipe(s3_env(endpoint), "synth", "--out", "s3://bkt/corpus")
    for done in (denied, unreachable):
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "s3://bkt/corpus" in lines[0], done.stderr
        assert "coat-test-secret" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert "access denied" in denied.stderr or "refused" in denied.stderr
    assert "did not answer" in unreachable.stderr


@pytest.mark.slow
def test_an_endpoint_that_accepts_and_never_answers_is_an_error_within_30_s():
    """A silent endpoint (a load balancer in front of nothing, a firewall that swallows replies): the
    connection opens, no byte ever comes back. Every call's time is bounded, retries included."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # the kernel accepts connections on our behalf; nobody ever reads or answers
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        done = _coat_pipe(s3_env(endpoint), "store", "check", "s3://bkt/corpus")
        waited = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "s3://bkt/corpus" in lines[0], done.stderr
    assert "did not answer" in lines[0] and waited < 30, (waited, lines)


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    final = run / "final"
    return {p.relative_to(final).as_posix(): load_file(p) for p in sorted(final.rglob("*.safetensors"))}


@pytest.mark.slow
def test_the_quickstart_path_from_a_bucket_trains_the_same_weights_as_from_disk(bucket, tmp_path):
    """synth → extract mel,pitch → store check → 2-rank DeepSpeed training → eval, with corpus and store in
    the bucket; the trained weights and the evaluation equal those of the same run on local disk."""
    url, local = f"{bucket}/train", tmp_path / "train"
    runs = {}
    for name, corpus in (("bucket", url), ("disk", local)):
        cli("synth", "--out", corpus, *SYNTH)
        cli("extract", "--corpus", corpus, "--expert", "mel,pitch", "--workers", 2, "--no-progress")
        cli("store", "check", corpus)
        run = tmp_path / f"run-{name}"
        train = [
            str(Path(sys.executable).with_name("deepspeed")),
            "--num_gpus",
            "2",
            "--no_python",
            str(Path(sys.executable).with_name("coat-pipe")),
            "train",
            "--backbone",
            "tiny-qwen2-audio",
            "--corpus",
            str(corpus),
            "--out",
            str(run),
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--think-tokens",
            "8",
            "--workers",
            "2",
        ]
        done = subprocess.run(
            train, env=subprocess_env(DS_ACCELERATOR="cpu"), capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        cli("eval", "--run", run, "--benchmark", "synth", "--manifest", corpus, "--out", run / "eval", "--no-progress")
        runs[name] = run
    bucket_weights, disk_weights = (_weights(runs[n]) for n in ("bucket", "disk"))
    assert bucket_weights.keys() == disk_weights.keys() and bucket_weights
    for file, tensors in bucket_weights.items():
        for key, value in tensors.items():
            assert torch.equal(value, disk_weights[file][key]), (file, key)
    metrics = [json.loads((runs[n] / "eval" / "metrics.json").read_text()) for n in ("bucket", "disk")]
    assert metrics[0]["accuracy"] == metrics[1]["accuracy"] and metrics[0]["n"] == 12


def _extract(corpus: str, *extra: str) -> subprocess.Popen:
    command = [str(Path(sys.executable).with_name("coat-pipe")), "extract", "--corpus", corpus, "--expert", "mel,pitch"]
    return subprocess.Popen(
        [*command, "--workers", "0", "--no-progress", *extra],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_an_extract_killed_mid_bucket_leaves_no_half_group_and_resumes(bucket, tmp_path):
    url = f"{bucket}/train"
    cli("synth", "--out", url, "--clips", 30, "--shard-size", 5, "--seed", 6)
    cli("synth", "--out", tmp_path / "train", "--clips", 30, "--shard-size", 5, "--seed", 6)
    cli("extract", "--corpus", tmp_path / "train", "--expert", "mel,pitch", "--workers", 0, "--no-progress")
    fs, root = corpus_path(url).fs, corpus_path(url).path
    proc = _extract(url)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        published = [p for p in fs.find(root, refresh=True) if p.endswith("/mel/zarr.json")]
        if published:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    published = [p for p in fs.find(root, refresh=True) if p.endswith("/mel/zarr.json")]
    assert 1 <= len(published) < 6, published  # killed after some shards and before the last
    # A reader now: every finding is a group or stats file that is not there (or a temporary name
    # left by the killed run), never a group that is there but damaged.
    check = cli("store", "check", url, "--quick", expect=None)
    assert check.exit_code in (0, 1) and "Traceback" not in check.output
    for problem in check_store(read_corpus(url), full=False):
        assert problem.what.startswith(("no ", "group ")) and "damaged" not in problem.what, problem
        assert "temporary name" in problem.what or problem.what.startswith("no "), problem
    done = _extract(url)
    output, _ = done.communicate(timeout=600)
    assert done.returncode == 0, output
    cli("store", "check", url)
    _assert_same_store(url, tmp_path / "train")


@pytest.mark.slow
def test_two_extractors_on_one_bucket_write_each_shard_once(bucket):
    url = f"{bucket}/train"
    cli("synth", "--out", url, "--clips", 16, "--shard-size", 4, "--seed", 7)
    first, second = _extract(url), _extract(url)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    written = []
    for output in outputs:
        line = next((x for x in output.splitlines() if x.startswith("written: ")), "written: ")
        written.append({n.strip() for n in line.removeprefix("written: ").split(",") if n.strip()})
    every = {s.name for s in read_corpus(url).shards}
    assert written[0] | written[1] == every and not written[0] & written[1], written
    cli("store", "check", url)


@pytest.mark.slow
def test_shard_uploads_its_tars_and_the_corpus_reads_back(bucket, tmp_path):
    import soundfile as sf

    rows = []
    for i in range(5):
        wave = 0.1 * np.sin(2 * np.pi * (200 + 50 * i) * np.arange(16000) / 16000)
        sf.write(tmp_path / f"c{i}.wav", wave.astype(np.float32), 16000)
        messages = [{"role": "user", "content": "What is heard?"}, {"role": "assistant", "content": f"tone {i}"}]
        rows.append(json.dumps({"audio": f"c{i}.wav", "messages": messages, "task": "aqa"}))
    rows.append(json.dumps({"audio": "missing.wav", "messages": [], "task": "aqa"}))
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    url = f"{bucket}/shards"
    cli("shard", "--manifest", tmp_path / "m.jsonl", "--out", url, "--shard-size", 2, "--workers", 1)
    corpus = read_corpus(url)
    assert corpus.samples == 5 and [s.samples for s in corpus.shards] == [2, 2, 1]
    rejected = (corpus_path(url) / "rejected.jsonl").read_text()
    assert "m.jsonl:6" in rejected and "messages" in rejected
    cli("extract", "--corpus", url, "--expert", "mel", "--workers", 0, "--no-progress")
    cli("store", "check", url)
    again = cli("shard", "--manifest", tmp_path / "m.jsonl", "--out", url, expect=2)
    assert "already holds a corpus" in again.output
    cli("shard", "--manifest", tmp_path / "m.jsonl", "--out", url, "--append", "--shard-size", 4, "--workers", 1)
    grown = read_corpus(url)  # the bucket's listing numbers the new tar; the keys are made unique
    assert [s.name for s in grown.shards][3:] == ["train-000003.tar", "train-000004.tar"] and grown.samples == 10
    assert (corpus_path(url) / "rejected.jsonl").read_text().count("m.jsonl:6") == 2
    cli("extract", "--corpus", url, "--expert", "mel", "--workers", 0, "--no-progress")
    cli("store", "check", url)
