"""`coat-pipe extract` ends a user's mistake or a damaged input in one line, exit 2, nothing else touched."""

import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds
import yaml
import zarr

from stages.extract.experts.tiny import make_tiny
from store_schema.corpus import ShardInfo, read_corpus, write_corpus
from store_schema.reader import ShardStore
from tests.helpers import cli, copy_corpus
from tests.refusals import damage_tar_header, error_line, tree_state

EXTRACT = ["extract", "--expert", "mel", "--workers", 0, "--no-progress"]


@pytest.fixture
def corpus(synth_corpus, tmp_path):
    return copy_corpus(synth_corpus, tmp_path / "c")


def _refused(corpus: Path, *args: object, names: tuple = (), watch: tuple = ()) -> str:
    before = tree_state(corpus, *watch)
    line = error_line(cli(*EXTRACT, "--corpus", corpus, *args, expect=2), 2, *names)
    assert tree_state(corpus, *watch) == before
    return line


class _Planted:
    """A pickle that, when unpickled, creates a file: proof that something ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_bad_option_value(corpus):
    assert "option n_mels='abc' is not a valid int" in _refused(corpus, "--set", "mel.n_mels=abc", names=("'mel'",))


def test_a_pickle_given_as_beats_checkpoint_runs_nothing(corpus, tmp_path):
    planted = tmp_path / "BEATs.pt"
    planted.write_bytes(pickle.dumps({"cfg": _Planted(tmp_path / "ran"), "model": {}}))
    args = ["--expert", "beats", "--checkpoint", planted]
    line = error_line(cli("extract", "--corpus", corpus, *args, "--no-progress", expect=2), 2, planted)
    assert "not a usable BEATs checkpoint" in line and not (tmp_path / "ran").exists()


@pytest.mark.slow
def test_a_folder_that_is_not_a_funasr_model(corpus, tmp_path):
    folder = tmp_path / "not-funasr"
    folder.mkdir()
    (folder / "config.yaml").write_text("model: NoSuchModel\n")
    args = ["--expert", "emotion2vec", "--checkpoint", folder, "--no-progress"]
    line = error_line(cli("extract", "--corpus", corpus, *args, expect=2), 2, folder)
    assert "not a usable emotion2vec model" in line


@pytest.mark.slow  # FunASR's import and model build: seconds
def test_a_funasr_folder_cannot_switch_on_its_own_remote_code(corpus, tmp_path):
    folder = make_tiny("emotion2vec", tmp_path / "tiny")
    code = tmp_path / "planted.py"
    code.write_text(f"import pathlib\npathlib.Path({str(tmp_path / 'ran')!r}).mkdir()\n")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump(config | {"trust_remote_code": True, "remote_code": str(code)}))
    (folder / "requirements.txt").write_text("no-such-package-coat-pipe-test\n")
    cli("extract", "--corpus", corpus, "--expert", "emotion2vec", "--checkpoint", folder, "--no-progress")
    assert not (tmp_path / "ran").exists()  # the folder asked; --trust-remote-code was not given
    cli("store", "check", corpus)


def test_damaged_tar_header(corpus):
    tar = corpus / "train-000001.tar"
    offset = damage_tar_header(tar, 3)
    line = _refused(corpus, names=(tar,))  # nothing is extracted, not even the sound shards before it
    assert f"damaged tar header at byte {offset}" in line or "cannot read the tar (invalid header)" in line


def test_a_shard_name_that_escapes_the_corpus(corpus, tmp_path):
    listing = json.loads((corpus / "corpus.json").read_text())
    (tmp_path / "elsewhere.tar").write_bytes((corpus / "train-000000.tar").read_bytes())
    listing["shards"][0]["name"] = "../elsewhere.tar"
    (corpus / "corpus.json").write_text(json.dumps(listing))
    line = _refused(corpus, names=("corpus.json", "'../elsewhere.tar'"), watch=(tmp_path / "elsewhere.tar",))
    assert "inside the corpus folder" in line and not (tmp_path / "elsewhere.zarr").exists()


@pytest.mark.parametrize("link", ["stats", "logs", "train-000000.zarr"])
def test_planted_links_are_not_written_through(corpus, tmp_path, link):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    (corpus / link).symlink_to(outside)
    _refused(corpus, names=(corpus / link, "symbolic link"), watch=(outside,))


def test_a_directory_with_a_dot_keeps_tar_and_store_keys_in_agreement(tmp_path):
    """webdataset keys end at the first dot of the basename; the store's keys must be the same ones."""
    root = tmp_path / "c"
    root.mkdir()
    turns = {"messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "a"}], "duration": 1.0}
    with wds.TarWriter(str(root / "x-000000.tar"), encoder=False) as tar:
        for key in ("set.v1/one", "set.v1/two"):
            wave = (0.2 * np.sin(np.arange(16000) / 10)).astype(np.float32)
            buffer = __import__("io").BytesIO()
            sf.write(buffer, wave, 16000, format="FLAC")
            tar.write({"__key__": key, "flac": buffer.getvalue(), "json": json.dumps(turns).encode()})
    write_corpus(root, 16000, [ShardInfo("x-000000.tar", 2, 2.0)], "test")
    cli(*EXTRACT, "--corpus", root)
    assert ShardStore(root / "x-000000.zarr").keys == ["set.v1/one", "set.v1/two"]
    cli("store", "check", root)


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs, mounted for the test (root in a container allows it; CI runs as root on such a machine)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs for the disk tests: {done.stderr.decode().strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_read_only_corpus(synth_corpus, small_fs):
    corpus = copy_corpus(synth_corpus, small_fs / "c")
    cli(*EXTRACT, "--corpus", corpus)  # complete: nothing left to do on the second run below
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    for args in ([], ["--overwrite"]):
        _refused(corpus, *args, names=("Read-only file system", "must be writable"))


def test_disk_full(synth_corpus, small_fs, tmp_path):
    corpus = copy_corpus(synth_corpus, small_fs / "c")
    (small_fs / "ballast").write_bytes(b"\0" * (2_000_000 - sum(f.stat().st_size for f in corpus.rglob("*")) - 20_000))
    before = {p: p.read_bytes() for p in corpus.glob("*.tar")} | {
        corpus / "corpus.json": (corpus / "corpus.json").read_bytes()
    }
    result = cli(*EXTRACT, "--corpus", corpus, expect=2)
    error_line(result, 2, "No space left on device")
    assert {p: p.read_bytes() for p in before} == before  # the corpus itself is untouched
    assert read_corpus(corpus).samples == 18


def test_store_stats_does_not_write_through_a_planted_link(extracted_corpus, tmp_path):
    corpus = copy_corpus(extracted_corpus, tmp_path / "c")
    outside = tmp_path / "outside"
    (corpus / "stats").rename(outside)
    (corpus / "stats").symlink_to(outside)
    before = tree_state(corpus, outside)
    error_line(cli("store", "stats", corpus, expect=2), 2, corpus / "stats", "symbolic link")
    assert tree_state(corpus, outside) == before


def test_a_group_another_extractor_completed_with_other_options_after_the_start_is_never_rewritten(
    corpus, monkeypatch
):
    """The check for groups made with other options runs again once the shard's lock is held: here another
    extractor (64 mel bins) completes shard 1 between this run's start (128 bins) and its taking the lock."""
    import stages.extract.runner as runner

    real_lock = runner.shard_lock
    raced = []

    def lock_after_a_rival(root, name, blocking):
        if name == "train-000001.tar" and not raced:
            raced.append(name)
            cli(*EXTRACT, "--corpus", corpus, "--set", "mel.n_mels=64", "--shard-index", 1, "--num-shards", 3)
        return real_lock(root, name, blocking=blocking)

    monkeypatch.setattr(runner, "shard_lock", lock_after_a_rival)
    result = cli(*EXTRACT, "--corpus", corpus, expect=2)
    error_line(result, 2, "made with other expert options")
    assert "train-000001.tar: mel" in result.output and "--overwrite" in result.output
    rival = ShardStore.for_tar(corpus / "train-000001.tar").expert("mel")
    assert raced and rival.spec.dim == 64  # the rival's complete group stands


@pytest.mark.parametrize("rate", ["0", "-1", "nan", "inf", "1e9"])
def test_a_store_rate_out_of_range_is_refused_before_anything_is_written(corpus, rate):
    _refused(corpus, "--store-rate", rate, names=("store_rate",))


def test_a_store_whose_rate_was_altered_is_named_by_check_and_train(corpus, tmp_path):
    cli(*EXTRACT, "--corpus", corpus)
    store = zarr.open_group(corpus / "train-000000.zarr", mode="r+")
    store.attrs["store_rate"] = -1.0
    result = cli("store", "check", corpus, "--quick", expect=1)  # problems found: exit 1
    assert "store rate -1.0 Hz" in result.output
    result = cli("train", "--backbone", "tiny-qwen2-audio", "--corpus", corpus, "--out", tmp_path / "r", expect=2)
    error_line(result, 2, "not ready for training")
    assert "store rate -1.0 Hz" in result.output
    assert not (tmp_path / "r").exists()
