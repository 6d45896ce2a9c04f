"""The tiny twins' cache is verified by content like a checkpoint: an altered file is named before anything
loads it, and an entry without its manifest (killed mid-build, half deleted, or older) is rebuilt."""

import pytest

from stages.file_manifest import MANIFEST
from stages.train.backbones import resolve_backbone
from store_schema.errors import UserError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COAT_PIPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_an_altered_twin_is_refused_and_one_without_a_manifest_is_rebuilt(cache):
    _, folder = resolve_backbone("tiny-qwen2-audio")
    weights = next(p for p in sorted(cache.rglob("*.safetensors")))
    original = weights.read_bytes()
    weights.write_bytes(original[:-64] + bytes(64))  # zeroed weights at the end: the same size, other content
    with pytest.raises(UserError, match=rf"{weights.name}: differs .* delete it and it is rebuilt"):
        resolve_backbone("tiny-qwen2-audio")
    (cache / "tiny" / "tiny-qwen2-audio-v{}".format(folder.rsplit("-v", 1)[1]) / MANIFEST).unlink()
    _, again = resolve_backbone("tiny-qwen2-audio")  # no manifest: rebuilt in full and put in place
    assert again == folder and weights.read_bytes() == original
    (weights.parent / "config.json").unlink()  # half deleted
    with pytest.raises(UserError, match="config.json: missing"):
        resolve_backbone("tiny-qwen2-audio")
