"""Dots in file and member names, through shard, extract, store check and train.

WebDataset ends a sample's key at the first dot of a member's basename: `one.take2.flac` is field
`take2.flac` of sample `one`. `shard` never writes a dot into a key (`take.1.wav` becomes `take_1`);
a tar made by another tool may hold such fields, and every reader of the project (the tar index that
extract and training seek with, webdataset's own grouping that store check and the loaders use) must
agree on the same keys. A reader that split at the last dot would see sample `one.take2` instead.
"""

import io
import json

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from store_schema.corpus import ShardInfo, TarIndex, iter_tar_samples, read_corpus, write_corpus
from store_schema.reader import ShardStore
from tests.helpers import cli

TURNS = [{"role": "user", "content": "What is heard?"}, {"role": "assistant", "content": "A tone."}]


def _tone(seconds: float, hz: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)


def _train_two_steps(corpus, out) -> list[str]:
    cli("train", "--backbone", "tiny-qwen2-audio", "--corpus", corpus, "--out", out, "--steps", 2,
        "--think-tokens", 2, "--batch-size", 2, "--workers", 0)  # fmt: skip
    rows = [json.loads(line) for line in (out / "batches-rank0.jsonl").read_text().splitlines()]
    return sorted({key for row in rows for key in row["keys"]})


@pytest.mark.slow
def test_dotted_file_names_become_keys_without_dots_everywhere(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    rows = []
    for i, name in enumerate(["take.1.wav", "take.2.final.wav", "v1.0.wav"]):
        sf.write(clips / name, _tone(1.0 + 0.2 * i, 220 * (i + 1)), 16000)
        rows.append({"audio": f"clips/{name}", "messages": TURNS})
    rows.append({"audio": "clips/v1.0.wav", "key": "mix.a.b", "messages": TURNS})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus = tmp_path / "corpus"
    cli("shard", "--manifest", tmp_path / "m.jsonl", "--out", corpus)
    cli("extract", "--corpus", corpus, "--expert", "mel", "--workers", 0, "--no-progress")
    cli("store", "check", corpus)
    tar = read_corpus(corpus).tar_path(read_corpus(corpus).shards[0])
    expected = ["take_1", "take_2_final", "v1_0", "mix_a_b"]
    assert TarIndex(tar).keys == [s["__key__"] for s in iter_tar_samples(tar)] == expected
    assert ShardStore.for_tar(tar).keys == expected
    assert _train_two_steps(corpus, tmp_path / "run") == sorted(expected)


@pytest.fixture
def foreign_tar(tmp_path):
    """A corpus whose tar another tool wrote: members `KEY.take2.flac` and `KEY.take2.json`."""
    root = tmp_path / "foreign"
    root.mkdir()
    keys = ["one", "two", "three", "four"]
    with wds.TarWriter(str(root / "x-000000.tar"), encoder=False) as tar:
        for i, key in enumerate(keys):
            buffer = io.BytesIO()
            sf.write(buffer, _tone(1.0, 200 + 50 * i), 16000, format="FLAC")
            meta = {"messages": TURNS, "duration": 1.0}
            tar.write({"__key__": key, "take2.flac": buffer.getvalue(), "take2.json": json.dumps(meta).encode()})
    write_corpus(root, 16000, [ShardInfo("x-000000.tar", len(keys), 4.0)], "another tool")
    return root, keys


def _extract_and_check(root, keys) -> None:
    tar = root / "x-000000.tar"
    assert TarIndex(tar).keys == [s["__key__"] for s in iter_tar_samples(tar)] == keys
    cli("extract", "--corpus", root, "--expert", "mel", "--workers", 0, "--no-progress")
    store = ShardStore.for_tar(tar)
    assert store.keys == keys and (store.expert("mel").status == 0).all()  # the audio was found and heard
    cli("store", "check", root)


def test_fields_with_dots_keep_the_key_at_the_first_dot(foreign_tar):
    _extract_and_check(*foreign_tar)


@pytest.mark.slow
def test_fields_with_dots_train(foreign_tar, tmp_path):
    root, keys = foreign_tar
    _extract_and_check(root, keys)
    assert _train_two_steps(root, tmp_path / "run") == sorted(keys)
