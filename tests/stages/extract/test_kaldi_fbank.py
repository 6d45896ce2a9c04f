"""The torch Kaldi fbank BEATs reads: equal to kaldi-native-fbank where Kaldi accepts the setting, and
torchaudio's behaviour (an empty low band at log eps) where it does not."""

import numpy as np
import pytest
import soundfile as sf
import torch

from stages.audio import resample
from stages.extract.experts.kaldi_fbank import EPS, fbank, mel_banks

knf = pytest.importorskip("kaldi_native_fbank", reason="test-only dependency (dev extra)")


def _speech(speech_dir) -> np.ndarray:
    wave, rate = sf.read(sorted(speech_dir.glob("en/*.wav"))[0], dtype="float32")
    return resample(wave, rate, 16000)


def _kaldi_native(wave: np.ndarray, bins: int) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.window_type = "povey"
    opts.mel_opts.num_bins = bins
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(16000, (wave * 2**15).tolist())
    computer.input_finished()
    return np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)])


@pytest.mark.parametrize("bins", [80, 40])
def test_matches_kaldi_native_fbank_on_real_speech(bins, speech_dir):
    wave = _speech(speech_dir)
    ours = fbank(torch.from_numpy(wave) * 2**15, num_mel_bins=bins).numpy()
    reference = _kaldi_native(wave, bins)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_128_bands_at_16_khz_leave_band_3_empty_as_torchaudio_does(speech_dir):
    banks = mel_banks(128, 512, 16000)
    empty = np.flatnonzero(banks.sum(dim=1).numpy() == 0)
    assert empty.tolist() == [3]  # its triangle falls between two FFT bins
    feats = fbank(torch.from_numpy(_speech(speech_dir)) * 2**15, num_mel_bins=128).numpy()
    assert feats.shape[1] == 128
    assert np.all(feats[:, 3] == np.float32(np.log(EPS)))  # floored at float32 eps, never -inf or NaN
    assert np.isfinite(feats).all() and (np.delete(feats, 3, axis=1) > np.log(EPS)).mean() > 0.99


def test_frames_snip_edges_25_ms_every_10_ms():
    wave = torch.zeros(16000)
    assert fbank(wave + 0.1).shape == (1 + (16000 - 400) // 160, 128)
    assert fbank(torch.zeros(399)).shape == (0, 128)
