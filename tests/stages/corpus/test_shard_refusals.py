"""`coat-pipe shard` refuses what training could not use, row by row, and never writes outside --out."""

import json
import struct

import numpy as np
import pytest
import soundfile as sf

from store_schema.corpus import iter_tar_samples, read_corpus
from tests.helpers import cli
from tests.refusals import error_line, tree_state

RATE = 16000
TURNS = [{"role": "user", "content": "What is heard?"}, {"role": "assistant", "content": "A tone."}]


def _tone(path, seconds: float = 1.0, rate: int = RATE) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate)


def _manifest(tmp_path, rows: list[dict]) -> object:
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rejected(out) -> dict[str, str]:
    return {r["origin"]: r["reason"] for r in map(json.loads, (out / "rejected.jsonl").read_text().splitlines())}


def _keys(out) -> list[str]:
    corpus = read_corpus(out)
    return [s["__key__"] for shard in corpus.shards for s in iter_tar_samples(corpus.tar_path(shard))]


BAD_CONVERSATIONS = {
    "empty": ([], "non-empty list"),
    "no-user": ([{"role": "assistant", "content": "A tone."}], "no user turn"),
    "no-assistant": ([{"role": "user", "content": "?"}], "no assistant turn"),
    "wrong-order": ([TURNS[1], TURNS[0]], "assistant turn comes before the first user turn"),
    "non-string": ([{"role": "user", "content": ["?"]}, TURNS[1]], "turn 1 must be"),
    "unknown-role": ([{"role": "robot", "content": "?"}, TURNS[1]], "turn 1 must be"),
}


def test_rows_training_could_not_use_are_rejected_with_their_reason(tmp_path):
    _tone(tmp_path / "a.wav")
    rows = [{"audio": "a.wav", "messages": TURNS, "key": "good"}]
    rows += [{"audio": "a.wav", "messages": m, "key": name} for name, (m, _) in BAD_CONVERSATIONS.items()]
    rows += [{"audio": "a.wav", "messages": TURNS, "key": 17}]  # an integer key
    manifest = _manifest(tmp_path, rows)
    cli("shard", "--manifest", manifest, "--out", tmp_path / "c")
    rejected = _rejected(tmp_path / "c")
    for line, (_, reason) in enumerate(BAD_CONVERSATIONS.values(), start=2):
        assert reason in rejected[f"{manifest}:{line}"]
    assert '"key" must be a string, got 17' in rejected[f"{manifest}:{len(rows)}"]
    assert len(rejected) == len(BAD_CONVERSATIONS) + 1 and _keys(tmp_path / "c") == ["good"]


def test_damaged_headers_and_overlong_files_are_refused_before_decoding(tmp_path):
    _tone(tmp_path / "good.wav")
    _tone(tmp_path / "ghz.wav")
    data = bytearray((tmp_path / "ghz.wav").read_bytes())
    data[24:28] = struct.pack("<I", 2_000_000_000)  # the WAV header's sample rate: 2 GHz
    (tmp_path / "ghz.wav").write_bytes(bytes(data))
    sf.write(tmp_path / "ten_hz.wav", np.zeros(20000, np.int16), 10, subtype="PCM_16")  # 40 kB declaring 2000 s
    _tone(tmp_path / "long.wav", seconds=6.0)
    rows = [{"audio": n, "messages": TURNS} for n in ("good.wav", "ghz.wav", "ten_hz.wav", "long.wav")]
    cli("shard", "--manifest", _manifest(tmp_path, rows), "--out", tmp_path / "c", "--max-seconds", 5)
    reasons = {
        r["audio"].rsplit("/", 1)[-1]: r["reason"]
        for r in map(json.loads, (tmp_path / "c" / "rejected.jsonl").read_text().splitlines())
    }
    assert "implausible sample rate 2000000000 Hz" in reasons["ghz.wav"]
    assert "implausible sample rate 10 Hz" in reasons["ten_hz.wav"]
    assert "6 s is longer than --max-seconds 5" in reasons["long.wav"]
    assert _keys(tmp_path / "c") == ["good"]


def test_an_audio_folder_file_without_a_transcript_is_rejected(tmp_path):
    (tmp_path / "audio").mkdir()
    _tone(tmp_path / "audio" / "said.wav")
    (tmp_path / "audio" / "said.txt").write_text("hello")
    _tone(tmp_path / "audio" / "bare.wav")
    cli("shard", "--audio-dir", tmp_path / "audio", "--out", tmp_path / "c")
    assert "no transcript bare.txt" in _rejected(tmp_path / "c")[str(tmp_path / "audio" / "bare.wav")]
    assert _keys(tmp_path / "c") == ["said"]


def test_name_holding_a_path_is_refused(tmp_path):
    _tone(tmp_path / "a.wav")
    manifest = _manifest(tmp_path, [{"audio": "a.wav", "messages": TURNS}])
    result = cli("shard", "--manifest", manifest, "--out", tmp_path / "c", "--name", "../escape", expect=2)
    error_line(result, 2, "--name '../escape'")
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob("escape*"))


@pytest.mark.parametrize("planted", ["tars", "symlinks"])
def test_out_must_be_new_or_empty(tmp_path, planted):
    _tone(tmp_path / "a.wav")
    manifest = _manifest(tmp_path, [{"audio": "a.wav", "messages": TURNS}])
    out, outside = tmp_path / "c", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    if planted == "tars":
        (out / "train-000000.tar").write_bytes(b"a user's own shard")
    else:
        for name in (".train-000000.tar.tmp", "rejected.jsonl"):
            (outside / name).write_text("precious")
            (out / name).symlink_to(outside / name)
        (out / "stats").symlink_to(outside)
    before = tree_state(out, outside)
    result = cli("shard", "--manifest", manifest, "--out", out, expect=2)
    error_line(result, 2, out, "is not empty")
    assert tree_state(out, outside) == before
