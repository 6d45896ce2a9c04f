"""Malformed sources end `shard` in one line naming the file (exit 2), or reject the row with its reason; nothing
is left that blocks the rerun, and nothing outside the source's folder is read."""

import gzip
import json

import numpy as np
import pytest
import soundfile as sf

from store_schema.corpus import read_corpus
from tests.helpers import cli
from tests.refusals import error_line, tree_state

TURNS = [{"role": "user", "content": "What is heard?"}, {"role": "assistant", "content": "A tone."}]


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    sf.write(folder / "a.wav", (0.2 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 300)).astype(np.float32), 16000)
    return folder


def _refused(tmp_path, *args, says):
    out = tmp_path / "out"
    before = tree_state(tmp_path)
    error_line(cli("shard", *args, "--out", out, "--workers", 1, expect=2), 2, *says)
    after = tree_state(tmp_path)
    assert after == before and not [p for p in out.iterdir()] if out.exists() else after == before
    return out


def _gz(path, rows):
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def test_chat_files_that_cannot_be_read_are_one_line(src, tmp_path):
    (src / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    _refused(tmp_path, "--from", "chat", src / "deep.json", says=("deep.json", "nested too deeply"))
    row = {"messages": [{"role": "user", "content": "café <audio>"}, TURNS[1]], "audios": ["a.wav"]}
    (src / "latin.jsonl").write_bytes((json.dumps(row, ensure_ascii=False) + "\n").encode("latin-1"))
    _refused(tmp_path, "--from", "chat", src / "latin.jsonl", says=("latin.jsonl", "UnicodeDecodeError"))
    (src / "dataset_info.json").write_text('["not", "a", "mapping"]')
    _refused(tmp_path, "--from", "chat", src, "--dataset", "d", says=("dataset_info.json", "not a mapping"))
    (src / "dataset_info.json").write_text(json.dumps({"d": {"formatting": "sharegpt", "file_name": "../x.json"}}))
    _refused(tmp_path, "--from", "chat", src, "--dataset", "d", says=("dataset_info.json", "lies outside"))


def test_hugging_face_folders_that_cannot_be_read_are_one_line(src, tmp_path):
    pytest.importorskip("pyarrow")
    (src / "state.json").write_text('{"_data_files": 3}')
    _refused(tmp_path, "--from", "hf", src, says=("state.json", "not a save_to_disk state"))
    (tmp_path / "elsewhere.arrow").write_bytes(b"a file outside the dataset")
    (src / "state.json").write_text('{"_data_files": [{"filename": "../elsewhere.arrow"}]}')
    _refused(tmp_path, "--from", "hf", src, says=("state.json", "lies outside"))
    (src / "state.json").write_text('{"_data_files": [{"filename": "data.arrow"}]}')
    (src / "data.arrow").write_bytes(b"garbage")
    _refused(tmp_path, "--from", "hf", src, says=(str(src), "ArrowInvalid"))
    (src / "state.json").unlink()
    (src / "x.parquet").write_bytes(b"garbage")
    _refused(tmp_path, "--from", "hf", src, says=(str(src), "ArrowInvalid"))


def test_lhotse_cuts_with_missing_mistyped_or_impossible_fields_are_rejected_with_their_reason(src, tmp_path):
    recording = {"id": "r", "sources": [{"type": "file", "channels": [0], "source": "a.wav"}],
                 "sampling_rate": 16000, "num_samples": 16000, "duration": 1.0, "channel_ids": [0]}  # fmt: skip
    cut = {"id": "c", "type": "MonoCut", "start": 0.0, "duration": 0.5, "channel": 0, "recording": recording,
           "supervisions": [{"text": "hi"}]}  # fmt: skip
    cases = {
        "negative duration": cut | {"duration": -0.5},
        "no id": {k: v for k, v in cut.items() if k != "id"},
        "start as text": cut | {"start": "zero"},
        "supervisions of text": cut | {"supervisions": ["hi"]},
        "two channels": cut | {"channel": [0, 1]},
        "sources of text": cut | {"recording": recording | {"sources": ["a.wav"]}},
    }
    rows = [cut, *cases.values()]
    out = tmp_path / "out"
    cli("shard", "--from", "lhotse", _gz(src / "cuts.jsonl.gz", rows), "--out", out, "--workers", 1)
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["origin"].rsplit(":", 1)[1] for r in rejected] == [str(n) for n in range(2, 2 + len(cases))]
    reasons = [r["reason"] for r in rejected]
    assert "duration -0.5" in reasons[0] and "no id" in reasons[1] and "start 'zero'" in reasons[2]
    assert "supervision text" in reasons[3] and "channel [0, 1]" in reasons[4] and "one file source" in reasons[5]


def test_a_manifest_row_outside_its_folder_needs_the_flag_as_every_source_does(src, tmp_path):
    (src / "sub").mkdir()
    (src / "sub" / "m.jsonl").write_text(json.dumps({"audio": "../a.wav", "messages": TURNS}) + "\n")
    out = tmp_path / "out"
    result = cli("shard", "--manifest", src / "sub" / "m.jsonl", "--out", out, "--workers", 1, expect=2)
    error_line(result, 2, "no usable sample")
    assert "lies outside" in (out / "rejected.jsonl").read_text() and not (out / "corpus.json").exists()
    cli("shard", "--manifest", src / "sub" / "m.jsonl", "--out", out, "--workers", 1, "--allow-outside-audio")
    assert json.loads((out / "corpus.json").read_text())["samples"] == 1  # the rerun needed nothing removed


def test_a_name_beyond_the_file_systems_limit_is_one_line(src, tmp_path):
    (src / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "messages": TURNS}) + "\n")
    error_line(cli("shard", "--manifest", src / "m.jsonl", "--out", tmp_path / ("x" * 300), expect=2), 2,
               "File name too long")  # fmt: skip
    error_line(cli("shard", "--manifest", src / "m.jsonl", "--out", tmp_path / "o", "--name", "n" * 300, expect=2),
               2, "File name too long")  # fmt: skip
    assert not [p for p in (tmp_path / "o").iterdir()]  # the run's own tars removed, nothing else written


def test_a_corpus_of_no_shards_is_refused_by_every_reader(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "corpus.json").write_text(json.dumps({"sample_rate": 16000, "shards": []}))
    for args in (("store", "check", tmp_path / "c"), ("extract", "--corpus", tmp_path / "c", "--expert", "mel")):
        error_line(cli(*args, expect=2), 2, "lists no shards")


def test_a_bad_row_mid_stream_leaves_nothing_that_blocks_the_rerun(src, tmp_path, monkeypatch):
    """Shards already written when a later row cannot be read are removed with their temporary folder:
    the same command, once the row is fixed, runs into the same --out."""
    monkeypatch.setattr("stages.corpus.shard.STREAM_BATCH", 1)  # rows 1-3 become tars before row 4 is read
    rows = [json.dumps({"messages": [TURNS[0] | {"content": "<audio>?"}, TURNS[1]], "audios": ["a.wav"]})] * 4
    chat = src / "chat.jsonl"
    # a byte that is not UTF-8 on line 4: rows 1-3 are shards by the time the reader meets it (a bad JSON
    # line is one rejected row instead, tested with the other row rejections)
    chat.write_bytes(("\n".join(rows[:3]) + "\n").encode() + b'{"\xff": 1}\n' + rows[3].encode() + b"\n")
    out = tmp_path / "out"
    args = ("shard", "--from", "chat", chat, "--out", out, "--workers", 1, "--shard-size", 1)
    error_line(cli(*args, expect=2), 2, "chat.jsonl")
    assert not out.exists() or not list(out.iterdir())
    chat.write_text("\n".join(rows) + "\n")
    cli(*args)
    assert len(read_corpus(out).shards) == 4
