"""Every setting that can change an expert's numbers enters its fingerprint: the options of every expert
are read from its constructor, and each is changed alone (the weights too, rewritten in place at the
same path). A setting left out would let `extract` resume a store with groups of two makings mixed."""

import inspect
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stages.extract.experts import EXPERTS, expert_class, load_expert
from stages.extract.experts.tiny import make_tiny

STORE_RATE = 12.5
# Settings that do not change the numbers, each with the reason; everything else must change the fingerprint.
NOT_NUMERIC = {
    "device": "cpu and cuda agree to within one float16 step (docs/PERFORMANCE.md)",
    "trust_remote_code": "decides whether code may run, not what the model computes",
    "threads": "onnxruntime's thread count (pitch)",
}
# compute in float32 whatever dtype says
FLOAT32_ONLY = {"mel", "pitch", "pitch-class", "emotion2vec", "emotion2vec-probs"}
OTHER_VALUES = {
    "sample_rate": 22050,
    "n_mels": 64,
    "win_ms": 32.0,
    "hop_ms": 20.0,
    "f_min": 20.0,
    "f_max": 7000.0,
    "layer": 1,
    "dtype": "bfloat16",
}


def _options(name: str) -> list[str]:
    params = inspect.signature(expert_class(name)).parameters
    return [p for p in params if p not in NOT_NUMERIC and not (p == "dtype" and name in FLOAT32_ONLY)]


def _rewrite_weights_in_place(checkpoint: Path) -> None:
    """Other weights at the same path: one tensor of every weight file moved a little."""
    files = (
        [checkpoint]
        if checkpoint.is_file()
        else sorted(checkpoint.glob("*.safetensors")) + sorted(checkpoint.glob("*.pt"))
    )
    assert files, checkpoint
    for path in files:
        if path.suffix == ".safetensors":
            tensors = load_file(path)
            first = next(iter(tensors))
            tensors[first] = tensors[first] + 0.01
            save_file(tensors, path, metadata={"format": "pt"})
        else:
            state = torch.load(path, weights_only=True)
            weights = state["model"] if "model" in state and isinstance(state["model"], dict) else state
            first = next(k for k, v in weights.items() if torch.is_floating_point(v))
            weights[first] = weights[first] + 0.01
            torch.save(state, path)


def _fingerprint(name: str, checkpoint: Path | None, **options) -> str:
    return load_expert(name, str(checkpoint) if checkpoint else None, **options).spec(STORE_RATE).fingerprint


FUNASR = ("emotion2vec", "emotion2vec-probs")  # FunASR's first import costs seconds: the slow lane


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in FUNASR else n for n in EXPERTS])
def test_each_option_alone_changes_the_fingerprint(name, tmp_path):
    checkpoint = make_tiny(name, tmp_path) if "checkpoint" in inspect.signature(expert_class(name)).parameters else None
    base = _fingerprint(name, checkpoint)
    assert _fingerprint(name, checkpoint) == base  # the same making, the same fingerprint
    changed = []
    for option in _options(name):
        if option == "checkpoint":
            _rewrite_weights_in_place(checkpoint)
            fingerprint = _fingerprint(name, checkpoint)
            make_tiny(name, tmp_path)  # the original weights back, at the same path
            assert _fingerprint(name, checkpoint) == base
        else:
            fingerprint = _fingerprint(name, checkpoint, **{option: OTHER_VALUES[option]})
        assert fingerprint != base, f"{name}: {option} changes the numbers but not the fingerprint"
        changed.append(option)
    if name not in ("pitch", "pitch-class"):
        assert changed, name  # every expert but the pitch tracker (either output) has something to set
