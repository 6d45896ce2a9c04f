"""`mel`: the log-mel spectrogram, the reconstruction target. No weights; runs batched in torch."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from stages.extract.experts.base import Expert

LOG_FLOOR = 1e-5  # added before the log: silence maps to about -11.5, not to -inf or a far outlier


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (linear below 1 kHz, logarithmic above), as librosa and Whisper use it."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, area-normalised (Slaney)."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz - lower) / (centre - lower)
    falling = (upper - fft_hz) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return (weights * (2.0 / (upper - lower))).astype(np.float32)


class MelExpert(Expert):
    """Log-mel spectrogram: 25 ms Hann windows every 10 ms (100 Hz), 128 Slaney mel bins, natural log.

    Each wave is zero-padded by half a window on both sides before framing, so frame i is centred
    on sample i * hop and a batch gives exactly what one-by-one calls give.
    Always computed in float32 (the `dtype` setting does not apply to a spectrogram).
    """

    name = "mel"
    kind = "spectrum"
    hears, model_name, rates = "spectra", "128-bin Slaney log-mel", "16 kHz -> 100 Hz"
    weights = "none (signal processing)"
    dtype_matters = False  # always float32

    def __init__(
        self,
        device: str = "cpu",
        dtype: str = "float32",
        sample_rate: int = 16000,
        n_mels: int = 128,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.n_fft = round(self.sample_rate * win_ms / 1000)
        self.hop = round(self.sample_rate * hop_ms / 1000)
        self.frame_rate = self.sample_rate / self.hop
        self.dim = int(n_mels)
        self.f_min, self.f_max = float(f_min), float(f_max or self.sample_rate / 2)
        self.device = torch.device(device)
        bank = mel_filterbank(self.sample_rate, self.n_fft, self.dim, self.f_min, self.f_max)
        self.filters = torch.from_numpy(bank).to(self.device)  # (n_mels, F)
        self.window = torch.hann_window(self.n_fft, periodic=True, device=self.device)

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        half = self.n_fft // 2
        longest = max(len(w) for w in waves)
        batch = torch.zeros(len(waves), longest + 2 * half, device=self.device)
        for i, wave in enumerate(waves):
            batch[i, half : half + len(wave)] = torch.from_numpy(wave).to(self.device)
        spec = torch.stft(batch, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        power = spec.abs().pow(2)  # (B, F, T)
        logmel = torch.log(self.filters @ power + LOG_FLOOR).transpose(1, 2)  # (B, T, n_mels)
        out = logmel.float().cpu().numpy()
        return [out[i, : self.num_frames(len(w))] for i, w in enumerate(waves)]

    def describe(self) -> dict[str, Any]:
        options = {
            "n_mels": self.dim,
            "n_fft": self.n_fft,
            "hop": self.hop,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "log_floor": LOG_FLOOR,
        }
        digest = hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()[:12]
        return {"model": "log-mel (slaney, hann)", "revision": digest, "layer": None, "options": options}
