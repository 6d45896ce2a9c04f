"""synth/shard -> extract -> store check, and what the stored numbers mean."""

import json

import numpy as np
import pytest
import soundfile as sf

from stages.extract.experts.pitch import cents_to_hz
from store_schema.corpus import iter_tar_samples, read_corpus
from store_schema.reader import ShardStore
from tests.helpers import cli

TURNS = [{"role": "user", "content": "Which note?"}, {"role": "assistant", "content": "A4"}]


def test_extract_then_check_on_three_shards(extracted_corpus):
    corpus = read_corpus(extracted_corpus)
    assert len(corpus.shards) == 3
    assert "store is sound" in cli("store", "check", extracted_corpus, "--expert", "mel,pitch").output
    for shard in corpus.shards:
        store = ShardStore.for_tar(corpus.tar_path(shard))
        assert store.experts() == ["mel", "pitch"]
        durations = [json.loads(s["json"])["duration"] for s in iter_tar_samples(corpus.tar_path(shard))]
        mel, pitch = store.expert("mel"), store.expert("pitch")
        assert (mel.status == 0).all() and (pitch.status == 0).all()
        for i, seconds in enumerate(durations):
            n = len(mel.frames_of(i))
            assert abs(n - round(seconds * 12.5)) <= 1, (store.keys[i], seconds, n)
            assert len(pitch.frames_of(i)) == n
        assert mel.frames.dtype == np.float16 and mel.clip.shape == (len(durations), 128)
    stats = json.loads((extracted_corpus / "stats" / "mel.json").read_text())
    assert stats["clips"] == 18 and len(stats["frames"]["std"]) == 128
    info = cli("store", "info", extracted_corpus).output
    assert "mel" in info and "3/3" in info


def test_stats_from_partial_sums_equal_a_recomputation(extracted_corpus, tmp_path):
    before = json.loads((extracted_corpus / "stats" / "pitch.json").read_text())
    from tests.helpers import copy_corpus

    copy = copy_corpus(extracted_corpus, tmp_path / "c")
    cli("store", "stats", copy, "--expert", "pitch")
    after = json.loads((copy / "stats" / "pitch.json").read_text())
    for part in ("frames", "clip"):
        np.testing.assert_allclose(before[part]["mean"], after[part]["mean"], rtol=1e-9)
        np.testing.assert_allclose(before[part]["std"], after[part]["std"], rtol=1e-9)


def test_a_440_hz_tone_is_stored_within_20_cents(tmp_path):
    t = np.arange(32000) / 16000
    sf.write(tmp_path / "a4.wav", 0.3 * np.sin(2 * np.pi * 440.0 * t), 16000, subtype="FLOAT")
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a4.wav", "task": "tone", "messages": TURNS}) + "\n")
    cli("shard", "--manifest", tmp_path / "m.jsonl", "--out", tmp_path / "c")
    cli("extract", "--corpus", tmp_path / "c", "--expert", "mel,pitch", "--workers", 0, "--no-progress")
    pitch = ShardStore(tmp_path / "c" / "train-000000.zarr").expert("pitch")
    frames = pitch.frames_of(0).astype(np.float64)
    assert len(frames) == 25
    voiced = frames[frames[:, 1] >= 0.5]
    assert len(voiced) >= 20
    error_cents = 1200 * np.log2(cents_to_hz(voiced[:, 0]) / 440.0)
    assert np.abs(error_cents).max() < 20, error_cents
    assert abs(1200 * np.log2(cents_to_hz(pitch.clip[0, 0]) / 440.0)) < 20


@pytest.mark.slow  # end to end; the fast lane keeps to 2 minutes
def test_real_speech_goes_through_and_its_f0_is_human(speech_dir, tmp_path):
    out = cli("shard", "--audio-dir", speech_dir, "--out", tmp_path / "speech", "--shard-size", 10).output
    assert "rejected" in out
    corpus = read_corpus(tmp_path / "speech")
    assert corpus.samples == 27 and [s.samples for s in corpus.shards] == [10, 10, 7]
    cli("extract", "--corpus", tmp_path / "speech", "--expert", "mel,pitch", "--no-progress")
    cli("store", "check", tmp_path / "speech")
    voiced_hz = []
    for shard in corpus.shards:
        first = next(iter_tar_samples(corpus.tar_path(shard)))
        meta = json.loads(first["json"])
        assert meta["task"] == "asr" and meta["messages"][1]["content"]  # the transcript travelled
        pitch = ShardStore.for_tar(corpus.tar_path(shard)).expert("pitch")
        assert (pitch.status == 0).all()
        frames = pitch.frames[:].astype(np.float64)
        voiced_hz.append(cents_to_hz(frames[frames[:, 1] >= 0.5, 0]))
    hz = np.concatenate(voiced_hz)
    assert len(hz) > 100
    inside = (hz > 60) & (hz < 500)  # adult and child speaking voices
    assert inside.mean() > 0.95, np.percentile(hz, [1, 50, 99])
