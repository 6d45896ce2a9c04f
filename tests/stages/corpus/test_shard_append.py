"""`shard --append`: new tars after the folder's own, keys unique across the corpus, rejections added, the old
tars untouched, corpus.json rewritten last; then extract runs the new shards only."""

import json

import numpy as np
import pytest
import soundfile as sf

from stages.corpus.shard import build_shards, read_manifest
from store_schema.corpus import iter_tar_samples, read_corpus
from store_schema.stats import read_stats
from tests.helpers import cli
from tests.refusals import error_line, tree_state

TURNS = [{"role": "user", "content": "What is heard?"}, {"role": "assistant", "content": "A tone."}]


def _manifest(folder, name, keys, bad=0):
    folder.mkdir(exist_ok=True)
    rows = []
    for key in keys:
        t = np.arange(16000) / 16000
        sf.write(folder / f"{name}-{key}.wav", (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)
        rows.append({"audio": f"{name}-{key}.wav", "messages": TURNS, "key": key})
    rows += [{"audio": f"missing-{i}.wav", "messages": TURNS} for i in range(bad)]
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _keys(corpus):
    return [s["__key__"] for shard in corpus.shards for s in iter_tar_samples(corpus.tar_path(shard))]


@pytest.fixture
def corpus(tmp_path):
    out = tmp_path / "c"
    cli("shard", "--manifest", _manifest(tmp_path / "src", "first", ["a", "b", "c"], bad=1), "--out", out,
        "--shard-size", 2, "--workers", 1)  # fmt: skip
    return out


def test_appended_shards_follow_the_folders_own_and_keys_never_repeat(corpus, tmp_path):
    before = read_corpus(corpus)
    old_tars = tree_state(*(before.tar_path(s) for s in before.shards))
    (corpus / "train-000004.tar").write_bytes(b"left by a killed append")  # not listed; never replaced
    more = _manifest(tmp_path / "src", "second", ["a", "d", "b"], bad=2)
    cli("shard", "--manifest", more, "--out", corpus, "--append", "--shard-size", 2, "--workers", 1)
    after = read_corpus(corpus)
    assert [s.name for s in after.shards] == ["train-000000.tar", "train-000001.tar", "train-000005.tar",
                                              "train-000006.tar"]  # fmt: skip
    keys = _keys(after)
    assert keys[:3] == ["a", "b", "c"] and sorted(keys[3:]) == ["a_2", "b_2", "d"] and len(set(keys)) == 6
    assert tree_state(*(before.tar_path(s) for s in before.shards)) == old_tars
    assert (corpus / "train-000004.tar").read_bytes() == b"left by a killed append"
    rejected = (corpus / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 3 and sum("missing-0.wav" in r for r in rejected) == 2
    assert after.samples == 6 and after.sample_rate == before.sample_rate


def test_an_append_that_dies_leaves_the_corpus_as_it_was(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr("stages.corpus.shard.STREAM_BATCH", 1)  # the first two are tars when the third fails
    state = tree_state(corpus)
    entries, _ = read_manifest(_manifest(tmp_path / "src", "second", ["x", "y", "z"]))

    def dies_after_two():
        yield from entries[:2]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        build_shards(dies_after_two(), corpus, shard_size=1, workers=1, progress=False, append=True)
    assert tree_state(corpus) == state  # the tars it had finished are gone with it, nothing half-listed
    assert [s.name for s in read_corpus(corpus).shards] == ["train-000000.tar", "train-000001.tar"]


def test_append_refuses_another_rate_and_a_folder_without_a_corpus(corpus, tmp_path):
    more = _manifest(tmp_path / "src", "second", ["d"])
    state = tree_state(corpus)
    error_line(cli("shard", "--manifest", more, "--out", corpus, "--append", "--sample-rate", 24000, expect=2),
               2, "--sample-rate 24000", "16000 Hz")  # fmt: skip
    error_line(cli("shard", "--manifest", more, "--out", tmp_path / "empty", "--append", expect=2), 2, "corpus.json")
    error_line(cli("shard", "--manifest", more, "--out", corpus, expect=2), 2, "--append")
    assert tree_state(corpus) == state and not (tmp_path / "empty").exists()


@pytest.mark.slow
def test_extract_after_an_append_runs_only_the_new_shards_and_pools_stats_over_all(corpus, tmp_path):
    cli("extract", "--corpus", corpus, "--expert", "mel", "--no-progress")
    assert read_stats(corpus, "mel").shards == 2
    cli("shard", "--manifest", _manifest(tmp_path / "src", "second", ["d", "e"]), "--out", corpus, "--append",
        "--shard-size", 2, "--workers", 1)  # fmt: skip
    result = cli("extract", "--corpus", corpus, "--expert", "mel", "--no-progress")
    stats = read_stats(corpus, "mel")
    assert stats.shards == 3 and stats.clips == 5
    assert "shards: 1 written, 2 already complete" in result.output
