"""BEATs against Microsoft's own code: numbers computed once by unilm/beats (BEATs.py, backbone.py, modules.py
@ 768a3c87) on a tiny model it initialised itself, committed as fixtures/beats_official_*.

The one-off run gave that code coat-pipe's Kaldi fbank in place of torchaudio's (which cannot be installed
here); the fbank has its own comparison in test_kaldi_fbank.py. What this test pins down is everything
after it: patches, relative position buckets, gated relative positions, deep norm, the encoder, frequency
averaging, the tag predictor, and the padding of a batch of two lengths."""

from pathlib import Path

import numpy as np
import pytest

from stages.extract.experts import load_expert
from tests.stages.extract.beats_cases import reference_waves

FIXTURES = Path(__file__).with_name("fixtures")
OFFICIAL = np.load(FIXTURES / "beats_official_outputs.npz")


def test_beats_frames_equal_the_official_code():
    expert = load_expert("beats", str(FIXTURES / "beats_official_beats.pt"))
    frames = expert(reference_waves())  # both clips in one padded batch
    for i, ours in enumerate(frames):
        reference = OFFICIAL[f"beats_clip{i}"]
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, atol=2e-5, rtol=1e-4)


def test_beats_tags_equal_the_official_code():
    expert = load_expert("beats-tags", str(FIXTURES / "beats_official_beats-tags.pt"))
    logits = expert(reference_waves())
    for i, ours in enumerate(logits):
        # the official code returns the sigmoid of the logits averaged over every token
        probabilities = 1 / (1 + np.exp(-ours[0].astype(np.float64)))
        np.testing.assert_allclose(probabilities, OFFICIAL[f"beats-tags_clip{i}"], atol=2e-6, rtol=1e-5)


def test_the_fixture_is_not_trivial():
    """Outputs that vary over time and between clips: a constant model could not pass the tests above."""
    frames = OFFICIAL["beats_clip0"]
    assert frames.std(axis=0).mean() > 1e-2 and not np.allclose(
        OFFICIAL["beats-tags_clip0"], OFFICIAL["beats-tags_clip1"]
    )


@pytest.mark.parametrize("dtype", ["float32"])
def test_official_weights_load_through_the_real_checkpoint_path(dtype):
    """The fixture is a checkpoint in BEATs' own format (cfg + weight-normed state dict), read by the same
    loader as BEATs_iter3_plus_AS2M.pt."""
    expert = load_expert("beats", str(FIXTURES / "beats_official_beats.pt"), dtype=dtype)
    assert expert.dim == 48 and expert.layers == 2
