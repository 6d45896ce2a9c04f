"""`coat-pipe store check` catches each way a store can go wrong, naming the shard and the fix."""

import json
import shutil

import numpy as np
import pytest
import zarr

from store_schema.check import check_store
from store_schema.corpus import read_corpus
from tests.helpers import cli, copy_corpus, extract_one_shard_with_other_options


@pytest.fixture
def corpus(extracted_corpus, tmp_path):
    return copy_corpus(extracted_corpus, tmp_path / "c")


def _problems(corpus) -> str:
    """The problems as `shard | what | fix` lines, after checking that the CLI exits 1 with a table."""
    result = cli("store", "check", corpus, expect=1)
    assert "problem(s)" in result.output
    return "\n".join(f"{p.shard} | {p.what} | {p.fix}" for p in check_store(read_corpus(corpus)))


def test_sound_store_passes(corpus):
    cli("store", "check", corpus)


def test_deleted_group(corpus):
    shutil.rmtree(corpus / "train-000001.zarr" / "pitch")
    out = _problems(corpus)
    assert "train-000001.tar" in out and "no 'pitch' group" in out and "coat-pipe extract" in out


def test_keys_reordered(corpus):
    keys = zarr.open_array(corpus / "train-000002.zarr" / "keys", mode="r+")
    values = keys[:]
    keys[:] = np.concatenate([values[1:2], values[:1], values[2:]])
    out = _problems(corpus)
    assert "train-000002.tar" in out and "keys differ from the tar from index 0" in out


def test_group_left_under_its_temporary_name(corpus):
    (corpus / "train-000000.zarr" / "mel").rename(corpus / "train-000000.zarr" / "mel.tmp-4242")
    out = _problems(corpus)
    assert "train-000000.tar" in out and "temporary name" in out and "re-run coat-pipe extract" in out


def test_group_made_with_other_options(corpus):
    extract_one_shard_with_other_options(corpus, 1)
    out = _problems(corpus)
    assert "train-000001.tar" in out and "other options" in out and "--overwrite" in out
    assert "train-000000.tar" not in out
    # The fix re-creates the majority's options: here the defaults, so no --set.
    assert "--expert mel --overwrite" in out


def test_fix_repeats_the_options_the_store_was_made_with(corpus):
    cli("extract", "--corpus", corpus, "--expert", "mel", "--set", "mel.n_mels=64", "--overwrite", "--no-progress")
    shutil.rmtree(corpus / "train-000002.zarr" / "mel")
    out = _problems(corpus)
    assert "no 'mel' group" in out and "--expert mel --set mel.n_mels=64" in out


def test_wrong_schema_version(corpus):
    root = zarr.open_group(corpus / "train-000000.zarr", mode="r+")
    root.attrs["schema_version"] = 99
    out = _problems(corpus)
    assert "train-000000.tar" in out and "schema version 99" in out


def test_missing_and_stale_stats(corpus):
    (corpus / "stats" / "mel.json").unlink()
    assert "no stats/mel.json" in _problems(corpus)
    cli("store", "stats", corpus, "--expert", "mel")
    cli("store", "check", corpus)
    stats = json.loads((corpus / "stats" / "pitch.json").read_text())
    stats["fingerprint"] = "0" * 16
    (corpus / "stats" / "pitch.json").write_text(json.dumps(stats))
    assert "other options" in _problems(corpus)


@pytest.mark.parametrize(("part", "field"), [("frames", "mean"), ("clip", "std")])
def test_stats_that_differ_from_the_stored_frames_are_named_when_the_fingerprint_holds(corpus, part, field):
    """A stats file whose fingerprint, clip count and shape are right but whose values are not those of
    the stored targets: only recomputing them from the frames shows it, which the full check does."""
    path = corpus / "stats" / "mel.json"
    stats = json.loads(path.read_text())
    stats[part][field][5] *= 1.01  # one dimension, 1 %: beyond float rounding, within any range check
    path.write_text(json.dumps(stats))
    assert check_store(read_corpus(corpus), full=False) == []  # structure alone cannot see it
    problems = check_store(read_corpus(corpus), full=True)
    assert [(p.shard, p.what) for p in problems] == [
        ("stats", "stats/mel.json differs from the stats of the stored frames")
    ]
    result = cli("store", "check", corpus, expect=1)
    assert "stats/mel.json differs from the stats of the stored frames" in result.output


def test_extract_refuses_to_mix_options_without_overwrite(corpus):
    result = cli("extract", "--corpus", corpus, "--expert", "mel", "--set", "mel.n_mels=64", expect=2)
    assert "other expert options" in result.output and "--overwrite" in result.output.replace("\n", " ")
    assert "Traceback" not in result.output
    cli("store", "check", corpus)  # nothing was touched
