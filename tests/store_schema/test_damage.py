"""`store check` reads the data, not only the structure: each kind of damage is named, none crashes it.

Each case damages a copy of an extracted corpus, then asserts the exit code (1 for findings), the shard
or file named in the table, no traceback, and that the check itself changed nothing.
"""

import json
import shutil

import numpy as np
import pytest
import zarr

from store_schema.check import check_store
from store_schema.corpus import read_corpus
from store_schema.layout import ExpertSpec
from tests.helpers import cli, copy_corpus
from tests.refusals import conversation, damage_tar_header, rewrite_tar, tree_state


@pytest.fixture
def corpus(extracted_corpus, tmp_path):
    return copy_corpus(extracted_corpus, tmp_path / "c")


def _findings(corpus, *flags: str) -> str:
    """`store check` exits 1 without a traceback and changes nothing; returns its table as text."""
    before = tree_state(corpus)
    result = cli("store", "check", corpus, *flags, expect=1)
    assert "Traceback" not in result.output and "problem(s)" in result.output
    assert tree_state(corpus) == before
    return "\n".join(f"{p.shard} | {p.what}" for p in check_store(read_corpus(corpus), full="--quick" not in flags))


def _array(corpus, shard: int, expert: str, name: str) -> zarr.Array:
    return zarr.open_array(corpus / f"train-{shard:06d}.zarr" / expert / name, mode="r+")


def test_nan_in_frames_is_found_by_the_full_check_only(corpus):
    frames = _array(corpus, 1, "mel", "frames")
    block = frames[:]
    block[3, 5] = np.nan
    frames[:] = block
    cli("store", "check", corpus, "--quick")  # the structure is intact: the quick mode cannot see values
    found = _findings(corpus)
    assert "train-000001.tar | 'mel' group frames holds NaN or Inf" in found


def test_inf_in_clip_targets(corpus):
    clip = _array(corpus, 2, "pitch", "clip")
    block = clip[:]
    block[0, 0] = np.inf
    clip[:] = block
    assert "train-000002.tar | 'pitch' group clip holds NaN or Inf" in _findings(corpus)


def test_nan_in_the_stats(corpus):
    path = corpus / "stats" / "mel.json"
    stats = json.loads(path.read_text())
    stats["frames"]["std"][0] = float("nan")
    path.write_text(json.dumps(stats))
    assert "stats/mel.json: holds NaN or Inf" in _findings(corpus, "--quick")


def test_garbage_stats_file(corpus):
    (corpus / "stats" / "pitch.json").write_text("{not json")
    assert "stats/pitch.json: not a readable stats file" in _findings(corpus, "--quick")


def test_deleted_chunk_file(corpus):
    chunk = next((corpus / "train-000000.zarr" / "pitch" / "status" / "c").rglob("*"))
    chunk.unlink()  # an all-ok status chunk is all zeros: zarr would read it back as zeros, silently
    assert "train-000000.tar | 'pitch' group status has 0 of its 1 chunk files" in _findings(corpus, "--quick")


def test_truncated_chunk_file(corpus):
    chunk = next(p for p in (corpus / "train-000001.zarr" / "mel" / "frames" / "c").rglob("*") if p.is_file())
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    found = _findings(corpus)
    # Blosc either refuses the short chunk or, depending on process-wide codec state that an earlier
    # in-process run can leave behind, decodes it to other bytes, which the content hash then catches.
    assert "train-000001.tar | 'mel' group has a chunk that cannot be read" in found or (
        "train-000001.tar | 'mel' group frames differs from what was written" in found
    ), found


def test_values_changed_since_the_write(corpus):
    frames = _array(corpus, 0, "mel", "frames")
    block = frames[:]
    block[0] += 1.0
    frames[:] = block
    assert "train-000000.tar | 'mel' group frames differs from what was written" in _findings(corpus)


def _edit_attrs(corpus, expert: str, change) -> None:
    for store in sorted(corpus.glob("*.zarr")):
        group = zarr.open_group(store / expert, mode="r+")
        attrs = dict(group.attrs)
        change(attrs)
        group.attrs.update(attrs)


def test_fingerprint_rewritten_consistently_everywhere(corpus):
    _edit_attrs(corpus, "mel", lambda a: a.update(fingerprint="0123456789abcdef"))
    path = corpus / "stats" / "mel.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"fingerprint": "0123456789abcdef"}))
    found = _findings(corpus, "--quick")
    for shard in range(3):
        assert f"train-00000{shard}.tar | 'mel' group has fingerprint 0123456789abcdef but its stored options" in found


def test_options_edited_while_the_fingerprint_is_kept(corpus):
    _edit_attrs(corpus, "pitch", lambda a: a.update(store_rate=25.0))
    assert "'pitch' group has fingerprint" in _findings(corpus, "--quick")
    # the recomputed fingerprint is the one ExpertSpec gives
    attrs = dict(zarr.open_group(corpus / "train-000000.zarr" / "pitch").attrs)
    assert ExpertSpec.from_attrs(attrs).fingerprint != attrs["fingerprint"]


def test_corpus_json_count_disagrees_with_the_tar(corpus):
    path = corpus / "corpus.json"
    listing = json.loads(path.read_text())
    listing["shards"][1]["samples"] += 1
    path.write_text(json.dumps(listing))
    assert "train-000001.tar | corpus.json lists 7 samples, the tar holds 6" in _findings(corpus, "--quick")


def test_damaged_tar_header_in_mid_shard(corpus):
    tar = corpus / "train-000002.tar"
    offset = damage_tar_header(tar, 4)  # tarfile alone would take the archive to end there
    found = _findings(corpus, "--quick")
    assert f"train-000002.tar | {tar}: damaged tar header at byte {offset} (" in found


def test_invalid_json_member_is_found_by_the_full_check(corpus):
    tar = corpus / "train-000000.tar"
    key = zarr.open_array(corpus / "train-000000.zarr" / "keys")[:].tolist()[2]
    rewrite_tar(tar, {f"{key}.json": b"{not json"})
    found = _findings(corpus)
    assert f"train-000000.tar | sample {key!r}: the json entry is not valid JSON" in found


def test_conversation_without_an_assistant_turn_is_found_by_the_full_check(corpus):
    key = zarr.open_array(corpus / "train-000001.zarr" / "keys")[:].tolist()[0]
    rewrite_tar(corpus / "train-000001.tar", {f"{key}.json": conversation(("user", "Which?"))})
    assert f"sample {key!r}: the conversation has no assistant turn" in _findings(corpus)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda c: (c / "train-000001.zarr" / "zarr.json").write_text("garbage"), "train-000001.zarr cannot be read"),
        (
            lambda c: (c / "train-000000.zarr" / "mel" / "zarr.json").write_text("{"),
            "train-000000.tar | 'mel' group cannot be read",
        ),
        (
            lambda c: shutil.rmtree(c / "train-000002.zarr" / "pitch" / "frames"),
            "train-000002.tar | 'pitch' group cannot be read",
        ),
    ],
    ids=["garbage-root-zarr-json", "garbage-group-zarr-json", "deleted-frames-array"],
)
def test_damaged_metadata_is_a_finding_not_a_traceback(corpus, damage, expected):
    damage(corpus)
    assert expected in _findings(corpus, "--quick")
