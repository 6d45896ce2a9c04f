"""`shard --from chat|hf|lhotse`: files written by the libraries that make them, round-tripped through
shard, extract and store check; every bad row named with its file and row, the rest sharded."""

import gzip
import io
import json

import numpy as np
import pytest
import soundfile as sf

from store_schema.corpus import conversation_turns, iter_tar_samples, read_corpus
from tests.helpers import cli

RATE = 16000


def _tone(path, seconds: float = 1.0, hz: float = 300.0) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(path, (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32), RATE)
    return path.read_bytes()


def _samples(out) -> dict[str, dict]:
    corpus = read_corpus(out)
    samples = {}
    for shard in corpus.shards:
        for sample in iter_tar_samples(corpus.tar_path(shard)):
            meta = json.loads(sample["json"])
            samples[sample["__key__"]] = meta | {"seconds": len(sf.read(io.BytesIO(sample["flac"]))[0]) / RATE}
    return samples


def _round_trip(out) -> dict[str, dict]:
    cli("extract", "--corpus", out, "--expert", "mel,pitch", "--workers", 0, "--no-progress")
    cli("store", "check", out)
    return _samples(out)


def _rejected(out) -> dict[str, str]:
    return {r["origin"]: r["reason"] for r in map(json.loads, (out / "rejected.jsonl").read_text().splitlines())}


def test_llama_factory_and_ms_swift_conversations(tmp_path):
    for name in ("a", "b"):
        _tone(tmp_path / f"{name}.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    (tmp_path.parent / "outside.wav").write_bytes(_tone(tmp_path / "c.wav"))
    user = {"role": "user", "content": "<audio>What is heard?"}
    answer = {"role": "assistant", "content": "A tone."}
    later = {"role": "user", "content": "And now?"}
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."}, user, answer], "audios": ["a.wav"], "id": "first"},
        {"messages": [{"role": "user", "content": "Which pitch? <audio>"}, answer, later, answer], "audios": ["b.wav"]},
        {"messages": [user, answer], "audios": []},
        {"messages": [user, answer], "audios": ["a.wav", "b.wav"]},
        {"messages": [user], "audios": ["a.wav"]},
        {"messages": [user, answer], "audios": ["missing.wav"]},
        {"messages": [user, answer], "audios": ["bad.wav"]},
        {"messages": [user, answer], "audios": ["../outside.wav"]},
    ]
    source = tmp_path / "train.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    out = tmp_path / "c"
    result = cli("shard", "--from", "chat", source, "--out", out)
    assert "conversations going on after the first answer (stored whole)" in result.output
    samples = _round_trip(out)
    assert sorted(samples) == ["first", "train-000002"]
    assert conversation_turns(samples["first"]["messages"]) == ("What is heard?", "A tone.")
    assert samples["first"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert conversation_turns(samples["train-000002"]["messages"]) == ("Which pitch?", "A tone.")
    assert samples["first"]["source"] == f"{source}:1"
    rejected = _rejected(out)
    expected = {
        3: "the row has an <audio> placeholder but no audio",
        4: "the row has 2 audios",
        5: "no assistant turn",
        6: "no such file",
        7: "cannot decode audio",
        8: "lies outside",
        9: "bad JSON line",
    }
    for row, reason in expected.items():
        assert reason in rejected[f"{source}:{row}"], (row, rejected)
    assert len(rejected) == len(expected)


def test_sharegpt_through_dataset_info(tmp_path):
    _tone(tmp_path / "a.wav")
    rows = [
        {
            "dialog": [{"speaker": "human", "text": "<audio>Describe it."}, {"speaker": "bot", "text": "A hum."}],
            "sound": ["a.wav"],
            "prompt": "You hear audio.",
        }
    ]
    (tmp_path / "sgpt.json").write_text(json.dumps(rows))
    info = {
        "aqa": {
            "file_name": "sgpt.json",
            "formatting": "sharegpt",
            "columns": {"messages": "dialog", "audios": "sound", "system": "prompt"},
            "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "human", "assistant_tag": "bot"},
        }
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    cli("shard", "--from", "chat", tmp_path, "--dataset", "aqa", "--out", tmp_path / "c")
    (sample,) = _round_trip(tmp_path / "c").values()
    assert sample["messages"] == [
        {"role": "system", "content": "You hear audio."},
        {"role": "user", "content": "Describe it."},
        {"role": "assistant", "content": "A hum."},
    ]


@pytest.mark.slow
def test_hugging_face_save_to_disk_and_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = _tone(tmp_path / "a.wav", 1.2)
    messages = [[{"role": "user", "content": "<audio>Pitch?"}, {"role": "assistant", "content": "Low."}]] * 2
    table = {"id": ["x1", "x2"], "audio": [{"bytes": good, "path": "x1.wav"}, {"bytes": b"garbage", "path": "x2.wav"}]}
    table["messages"] = messages
    ds = datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio(decode=False))
    ds.save_to_disk(str(tmp_path / "saved"))
    cli("shard", "--from", "hf", tmp_path / "saved", "--out", tmp_path / "c1")
    samples = _round_trip(tmp_path / "c1")
    assert list(samples) == ["x1"] and conversation_turns(samples["x1"]["messages"]) == ("Pitch?", "Low.")
    assert abs(samples["x1"]["seconds"] - 1.2) < 0.01
    assert list(_rejected(tmp_path / "c1")) == [f"{tmp_path / 'saved' / 'data-00000-of-00001.arrow'}:2"]

    _tone(tmp_path / "b.wav", 0.8)
    columns = {
        "audio": ["b.wav", "nowhere.wav", ""],
        "question": ["Loud?", "Soft?", "?"],
        "answer": ["Yes.", "No.", "."],
    }
    parquet = pa.table(columns)
    pq.write_table(parquet, tmp_path / "part.parquet")
    args = ["--question-column", "question", "--answer-column", "answer", "--out", tmp_path / "c2"]
    cli("shard", "--from", "hf", tmp_path / "part.parquet", *args)
    samples = _round_trip(tmp_path / "c2")
    assert [conversation_turns(s["messages"]) for s in samples.values()] == [("Loud?", "Yes.")]
    rejected = _rejected(tmp_path / "c2")
    assert "no such file" in rejected[f"{tmp_path / 'part.parquet'}:2"]
    assert "neither bytes nor a path" in rejected[f"{tmp_path / 'part.parquet'}:3"]


@pytest.mark.slow  # end to end; the fast lane keeps to 2 minutes
def test_lhotse_cuts_inside_a_longer_recording_and_supervision_segments(tmp_path, monkeypatch):
    lhotse = pytest.importorskip("lhotse")
    monkeypatch.chdir(tmp_path)  # lhotse records the path it was given, relative here
    t = np.arange(3 * RATE) / RATE
    wave = np.where(t < 1.5, np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 800 * t))
    sf.write("long.wav", (0.2 * wave).astype(np.float32), RATE)
    recording = lhotse.Recording.from_file("long.wav")
    segments = [
        lhotse.SupervisionSegment(id="low", recording_id="long", start=0.2, duration=1.0, text="a low tone"),
        lhotse.SupervisionSegment(id="high", recording_id="long", start=1.8, duration=0.9, text="a high tone"),
        lhotse.SupervisionSegment(id="lost", recording_id="gone", start=0.0, duration=1.0, text="nothing"),
    ]
    recordings = lhotse.RecordingSet.from_recordings([recording])
    recordings.to_file("recs.jsonl.gz")
    lhotse.SupervisionSet.from_segments(segments).to_file("sups.jsonl.gz")
    cuts = lhotse.CutSet.from_manifests(recordings, lhotse.SupervisionSet.from_segments(segments[:2]))
    cuts.trim_to_supervisions().to_file("cuts.jsonl.gz")
    with gzip.open("cuts.jsonl.gz", "rt") as f:
        lines = f.read().splitlines()
    moved = json.loads(lines[0])
    moved["id"], moved["recording"]["sources"][0]["source"] = "moved", "moved.wav"
    with gzip.open("cuts.jsonl.gz", "wt") as f:  # a cut whose file is gone, and a malformed line
        f.write("\n".join([*lines, json.dumps(moved), "{half a cut"]) + "\n")

    cli("shard", "--from", "lhotse", tmp_path / "cuts.jsonl.gz", "--out", tmp_path / "c1")
    sups = tmp_path / "sups.jsonl.gz"
    cli("shard", "--from", "lhotse", tmp_path / "recs.jsonl.gz", "--supervisions", sups, "--out", tmp_path / "c2")
    for out in ("c1", "c2"):
        samples = _round_trip(tmp_path / out)
        assert sorted(samples) == ["high", "low"]
        assert abs(samples["low"]["seconds"] - 1.0) < 1e-3 and abs(samples["high"]["seconds"] - 0.9) < 1e-3
        assert conversation_turns(samples["high"]["messages"])[1] == "a high tone"
    # the cut's audio is its span of the recording: the low tone's zero crossings are 200 Hz apart
    corpus = read_corpus(tmp_path / "c1")
    low = next(s for sh in corpus.shards for s in iter_tar_samples(corpus.tar_path(sh)) if s["__key__"] == "low")
    clip, _ = sf.read(io.BytesIO(low["flac"]))
    crossings = np.count_nonzero(np.diff(np.signbit(clip)))
    assert abs(crossings / 1.0 / 2 - 200) < 5
    assert "no recording 'gone'" in _rejected(tmp_path / "c2")[f"{tmp_path / 'sups.jsonl.gz'}:3"]
    rejected = _rejected(tmp_path / "c1")
    assert "no such file" in rejected[f"{tmp_path / 'cuts.jsonl.gz'}:3"]
    assert "bad JSON line" in rejected[f"{tmp_path / 'cuts.jsonl.gz'}:4"]


@pytest.mark.slow
def test_bench_shard_runs_every_format_on_the_same_clips():
    """`bench shard`: every format wrote all clips (it raises otherwise), and each ratio is that format's
    speed over the JSONL manifest's; no bound on speeds or memory."""
    from stages.bench.shard import bench_shard

    result = bench_shard(clips=6, seconds=0.5, rows=(10, 50))
    assert result["audio_seconds"] == 3.0 and set(result["peak_rss_mb"]) == {10, 50}
    base = result["speeds"]["jsonl manifest (today's path)"]
    assert len(result["speeds"]) == 4
    for name, speed in result["speeds"].items():
        assert result["ratios"][name] == pytest.approx(speed / base), name
