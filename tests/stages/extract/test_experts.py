import numpy as np
import pytest

from stages.extract.experts import load_expert
from stages.extract.experts.pitch import cents_to_hz
from store_schema.errors import UserError


def _tone(hz: float, seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_mel_frames_cover_the_clip_and_batching_changes_nothing():
    mel = load_expert("mel")
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 3210, 40000)]
    batched = mel(waves)
    for wave, frames in zip(waves, batched):
        assert frames.shape == (1 + len(wave) // 160, 128)
        np.testing.assert_allclose(frames, mel([wave])[0], atol=1e-4)


def test_mel_peaks_in_the_bin_of_the_tone():
    mel = load_expert("mel")
    frames = mel([_tone(1000.0, 0.5)])[0]
    peak_bin = int(frames[10:-10].mean(axis=0).argmax())
    centres = mel.filters.numpy().argmax(axis=1) * (16000 / 400)  # FFT bin of each filter's peak, in Hz
    assert abs(centres[peak_bin] - 1000.0) < 80


def test_pitch_of_a_440_hz_tone():
    pitch = load_expert("pitch")
    frames = pitch([_tone(440.0, 1.0)])[0]
    assert frames.shape[1] == 2 and abs(len(frames) - 62.5) <= 1
    voiced = frames[frames[:, 1] >= 0.5]
    assert len(voiced) > 0.8 * len(frames)
    assert abs(1200 * np.log2(cents_to_hz(np.median(voiced[:, 0])) / 440.0)) < 20


def test_options_enter_the_fingerprint():
    a, b = load_expert("mel").spec(12.5), load_expert("mel", n_mels=64).spec(12.5)
    assert b.dim == 64 and a.fingerprint != b.fingerprint
    assert load_expert("mel").spec(12.5).fingerprint == a.fingerprint


def test_unknown_expert_and_unknown_option_are_user_errors():
    with pytest.raises(UserError, match="unknown expert 'nope'.*mel"):
        load_expert("nope")
    with pytest.raises(UserError, match="no option n_bins.*n_mels"):
        load_expert("mel", n_bins=3)
