"""`coat-pipe train` end to end: 2 ranks under deepspeed on each tiny backbone, resume, refusals, baseline."""

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from stages.train.bundle import load_bundle
from store_schema.corpus import read_corpus, read_tar_keys
from tests.helpers import cli, copy_corpus, extract_one_shard_with_other_options, subprocess_env
from tests.stages.train.conftest import TINY

DEEPSPEED = Path(sys.executable).with_name("deepspeed")
COAT = Path(sys.executable).with_name("coat-pipe")
TRAIN = ["train", "--think-tokens", "8", "--batch-size", "4", "--lr", "2e-3"]


@pytest.fixture(scope="session")
def five_shards(tmp_path_factory):
    """30 clips in 5 shards, mel and pitch extracted."""
    root = tmp_path_factory.mktemp("five") / "corpus"
    cli("synth", "--out", root, "--clips", 30, "--shard-size", 6, "--seed", 4)
    cli("extract", "--corpus", root, "--expert", "mel,pitch", "--workers", 0, "--no-progress")
    return root


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _env() -> dict[str, str]:
    return subprocess_env(DS_ACCELERATOR="cpu", COLUMNS="200", PYTHONUNBUFFERED="1")


@pytest.mark.slow
def test_two_ranks_zero2_on_each_tiny_backbone(five_shards, tmp_path):
    """The three backbones, each trained 24 steps on 2 ranks; one launch trains them one after another (a
    sweep, as the quickstart's arms are), so the launcher and the ranks' imports are paid once."""
    sweep = tmp_path / "backbones.yaml"
    sweep.write_text(yaml.safe_dump([{"name": b, "model": {"backbone": b}} for b in TINY]))
    command = [
        str(DEEPSPEED),
        "--num_gpus",
        "2",
        "--no_python",
        str(COAT),
        *TRAIN,
        "--backbone",
        TINY[0],
        "--corpus",
        str(five_shards),
        "--out",
        str(tmp_path / "runs"),
        "--sweep",
        str(sweep),
        "--steps",
        "24",
        "--save-every",
        "12",
        "--workers",
        "2",
    ]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    corpus = read_corpus(five_shards)
    everything = {k for s in corpus.shards for k in read_tar_keys(corpus.tar_path(s))}
    for backbone in TINY:
        run = tmp_path / "runs" / backbone
        metrics = _rows(run / "metrics.jsonl")
        assert [m["step"] for m in metrics] == list(range(1, 25))
        assert {m["stage"] for m in metrics} == {"align", "joint"}
        for part in ("lm", "mel", "pitch"):
            values = [m[part] for m in metrics]
            assert np.mean(values[-6:]) < np.mean(values[:6]), (backbone, part, values)

        # same step count on both ranks; in epoch 0 every clip was seen, repeats only to pad the last step
        logs = [_rows(run / f"batches-rank{r}.jsonl") for r in (0, 1)]
        assert len(logs[0]) == len(logs[1]) == 24
        epoch0 = Counter(k for log in logs for row in log if row["epoch"] == 0 for k in row["keys"])
        assert set(epoch0) == everything and sum(epoch0.values()) - len(everything) == 2  # 30 clips, 32 slots

        bundle = load_bundle(run / "final")
        assert bundle.backbone.name == backbone.removeprefix("tiny-") and set(bundle.heads) == {"mel", "pitch"}


@pytest.mark.slow
def test_no_think_trains_the_same_data_and_lora_without_block_or_heads(five_shards, tmp_path):
    args = [*TRAIN, "--backbone", "tiny-qwen2-audio", "--corpus", five_shards, "--steps", 3, "--workers", 0]
    cli(*args, "--out", tmp_path / "coat")
    cli(*args, "--out", tmp_path / "base", "--no-think")
    keys = [[r["keys"] for r in _rows(tmp_path / n / "batches-rank0.jsonl")] for n in ("coat", "base")]
    assert keys[0] == keys[1]
    base = load_bundle(tmp_path / "base" / "final")
    assert base.think is None and not (tmp_path / "base" / "final" / "heads.safetensors").exists()
    metrics = _rows(tmp_path / "base" / "metrics.jsonl")
    assert all(set(m) >= {"lm", "loss"} and "mel" not in m for m in metrics)


@pytest.mark.parametrize("fault", ["missing expert", "keys reordered", "stale fingerprint", "no stats"])
def test_a_store_that_cannot_be_trusted_is_refused_before_step_1(fault, extracted_corpus, tmp_path):
    corpus = copy_corpus(extracted_corpus, tmp_path / "c")
    experts = "mel,pitch"
    if fault == "missing expert":
        experts = "mel,pitch,beats"
    elif fault == "keys reordered":
        keys = zarr.open_array(corpus / "train-000001.zarr" / "keys", mode="r+")
        keys[:] = keys[:][::-1]
    elif fault == "stale fingerprint":
        extract_one_shard_with_other_options(corpus, 0)
    else:
        shutil.rmtree(corpus / "stats")
    result = cli(
        *TRAIN,
        "--backbone",
        "tiny-qwen2-audio",
        "--corpus",
        corpus,
        "--out",
        tmp_path / "run",
        "--experts",
        experts,
        "--steps",
        2,
        expect=2,
    )
    text = " ".join(result.output.split())
    assert "not ready for training" in text and ("train-00000" in text or "stats" in text), text
    assert not (tmp_path / "run" / "checkpoints").exists()
