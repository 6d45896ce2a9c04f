"""Bad input is named with its reason, counted, and costs nothing else."""

import io
import json

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from store_schema.corpus import ShardInfo, iter_tar_samples, read_corpus, write_corpus
from store_schema.layout import Status
from store_schema.reader import ShardStore
from tests.helpers import cli

RATE = 16000
TURNS = [{"role": "user", "content": "?"}, {"role": "assistant", "content": "a tone"}]


def _sine(seconds: float, rate: int = RATE, hz: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.slow
def test_manifest_of_bad_and_odd_files(tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "good.wav", _sine(1.5), RATE)
    good_flac = io.BytesIO()
    sf.write(good_flac, _sine(3.0), RATE, format="FLAC")
    (d / "truncated.flac").write_bytes(good_flac.getvalue()[: len(good_flac.getvalue()) // 2])
    sf.write(d / "empty.wav", np.zeros(0, np.float32), RATE)
    sf.write(d / "nans.wav", np.full(8000, np.nan, np.float32), RATE, subtype="FLOAT")
    sf.write(d / "short.wav", _sine(0.05), RATE)
    stereo = np.stack([_sine(2.0, 44100, 440.0), _sine(2.0, 44100, 660.0)], axis=1)
    sf.write(d / "stereo.ogg", stereo, 44100, format="OGG", subtype="VORBIS")
    sf.write(d / "speech.mp3", _sine(2.5, 22050), 22050, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(d / "long.flac", _sine(600.0), RATE)
    names = [
        "good.wav",
        "missing.wav",
        "truncated.flac",
        "empty.wav",
        "nans.wav",
        "short.wav",
        "stereo.ogg",
        "speech.mp3",
        "long.flac",
    ]
    lines = [json.dumps({"audio": f"audio/{n}", "messages": TURNS, "task": "t"}) for n in names]
    lines.insert(3, "{not json")
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")

    out = cli("shard", "--manifest", tmp_path / "m.jsonl", "--out", tmp_path / "c", "--shard-size", 3).output
    rejected = {
        r["audio"].rsplit("/", 1)[-1]: r["reason"]
        for r in map(json.loads, (tmp_path / "c" / "rejected.jsonl").read_text().splitlines())
    }
    assert "no such file" in rejected["missing.wav"]
    assert "cannot decode" in rejected["truncated.flac"]
    assert "no samples" in rejected["empty.wav"]
    assert "NaN" in rejected["nans.wav"]
    assert "bad manifest line" in rejected[""] and "m.jsonl:4" in out
    assert len(rejected) == 5

    corpus = read_corpus(tmp_path / "c")
    samples = {s["__key__"]: s for sh in corpus.shards for s in iter_tar_samples(corpus.tar_path(sh))}
    assert sorted(samples) == ["good", "long", "short", "speech", "stereo"]
    wave, rate = sf.read(io.BytesIO(samples["stereo"]["flac"]))
    assert rate == RATE and wave.ndim == 1 and abs(len(wave) / RATE - 2.0) < 0.01
    wave, rate = sf.read(io.BytesIO(samples["speech"]["flac"]))
    assert rate == RATE and abs(len(wave) / RATE - 2.5) < 0.1  # MP3 adds encoder padding

    result = cli("extract", "--corpus", tmp_path / "c", "--expert", "mel,pitch", "--no-progress")
    assert "short" in result.output and "too short" in result.output
    cli("store", "check", tmp_path / "c")
    for shard in corpus.shards:
        store = ShardStore.for_tar(corpus.tar_path(shard))
        for expert in ("mel", "pitch"):
            group = store.expert(expert)
            for i, key in enumerate(store.keys):
                if key == "short":
                    assert group.status[i] == Status.TOO_SHORT and len(group.frames_of(i)) == 0
                else:
                    assert group.status[i] == Status.OK
                    expected = round(json.loads(samples[key]["json"])["duration"] * 12.5)
                    assert abs(len(group.frames_of(i)) - expected) <= 1
                    if key == "long":
                        assert len(group.frames_of(i)) == 7500


def test_bad_tar_entries_get_status_codes_and_names(tmp_path):
    """Tars written by other tools can hold what `shard` would reject; extract names each one."""
    root = tmp_path / "c"
    root.mkdir()

    def encoded(wave: np.ndarray, fmt: str, subtype: str) -> bytes:
        b = io.BytesIO()
        sf.write(b, wave, RATE, format=fmt, subtype=subtype)
        return b.getvalue()

    entries = [
        ("ok", {"flac": encoded(_sine(1.0), "FLAC", "PCM_16")}),
        ("garbage", {"flac": b"definitely not audio"}),
        ("zero_bytes", {"flac": b""}),
        ("nan", {"wav": encoded(np.full(16000, np.nan, np.float32), "WAV", "FLOAT")}),
        ("silent", {"flac": encoded(np.zeros(16000, np.float32), "FLAC", "PCM_16")}),
        ("no_audio", {}),
    ]
    with wds.TarWriter(str(root / "x-000000.tar"), encoder=False) as tar:
        for key, audio in entries:
            tar.write({"__key__": key, **audio, "json": json.dumps({"messages": TURNS, "duration": 1.0}).encode()})
    write_corpus(root, RATE, [ShardInfo("x-000000.tar", len(entries), 6.0)], "test")

    out = cli("extract", "--corpus", root, "--expert", "mel", "--workers", 0, "--no-progress").output
    group = ShardStore(root / "x-000000.zarr").expert("mel")
    assert group.status.tolist() == [
        Status.OK,
        Status.UNDECODABLE,
        Status.EMPTY,
        Status.NON_FINITE,
        Status.SILENT,
        Status.NO_AUDIO,
    ]
    for key in ("garbage", "zero_bytes", "nan", "silent", "no_audio"):
        assert key in out
    log = next((root / "logs").glob("extract-*.jsonl")).read_text().splitlines()
    assert len(log) == 5
    cli("store", "check", root)
