"""Kaldi-style log mel filterbank in torch, matching torchaudio.compliance.kaldi.fbank's defaults.

Settings as Kaldi and torchaudio use them: frames are snipped at the edges, each frame has its DC
offset removed, pre-emphasis is 0.97, the window is Povey's (Hann to the power 0.85), the FFT size
is the next power of two, and the result is the power spectrum. The mel bands are triangles on
Kaldi's mel scale, 1127 ln(1 + f/700), from 20 Hz to Nyquist, and each output is the log of the
band energy floored at float32 eps.

With many bands at 16 kHz and a 25 ms window, a low triangle can fall between two FFT bins and hold
none of them. Kaldi and kaldi-native-fbank refuse such settings. torchaudio accepts them, and that
band comes out at log(eps). BEATs was trained on torchaudio's 128-band output, so this module
behaves the same way.
"""

from __future__ import annotations

import math

import torch

EPS = torch.finfo(torch.float32).eps


def kaldi_mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(freq / 700.0)


def mel_banks(num_bins: int, fft_size: int, sample_rate: float, low_freq: float = 20.0, high_freq: float = 0.0):  # noqa: ANN201
    """(num_bins, fft_size // 2 + 1) triangular weights; the Nyquist column is zero, as in Kaldi."""
    nyquist = sample_rate / 2
    high = nyquist + high_freq if high_freq <= 0 else high_freq
    mel_low, mel_high = kaldi_mel(torch.tensor(low_freq)), kaldi_mel(torch.tensor(high))
    delta = (mel_high - mel_low) / (num_bins + 1)
    left = mel_low + torch.arange(num_bins) * delta
    centre, right = left + delta, left + 2 * delta
    fft_mels = kaldi_mel(sample_rate / fft_size * torch.arange(fft_size // 2, dtype=torch.float64)).float()
    up = (fft_mels[None, :] - left[:, None]) / (centre - left)[:, None]
    down = (right[:, None] - fft_mels[None, :]) / (right - centre)[:, None]
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))  # the Nyquist bin gets no weight


def fbank(
    wave: torch.Tensor,
    num_mel_bins: int = 128,
    sample_rate: int = 16000,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemphasis: float = 0.97,
) -> torch.Tensor:
    """(frames, num_mel_bins) log mel energies of a 1-D wave (scale as the caller wants, e.g. × 2^15)."""
    window = int(sample_rate * frame_length_ms / 1000)
    shift = int(sample_rate * frame_shift_ms / 1000)
    fft_size = 2 ** math.ceil(math.log2(window))
    wave = wave.to(torch.float32)
    if len(wave) < window:
        return torch.zeros(0, num_mel_bins)
    frames = wave.unfold(0, window, shift)  # snip edges: only whole frames
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # the first sample repeats itself
    frames = frames - preemphasis * previous
    frames = frames * torch.hann_window(window, periodic=False, device=wave.device).pow(0.85)
    spectrum = torch.fft.rfft(frames, n=fft_size).abs().pow(2)
    banks = mel_banks(num_mel_bins, fft_size, sample_rate).to(wave.device)
    return torch.clamp(spectrum @ banks.T, min=EPS).log()
