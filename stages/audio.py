"""Audio in and out: decode with soundfile, mix to mono, resample with soxr, encode FLAC, classify bad clips."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from store_schema.layout import Status

SILENCE_PEAK = 1e-4  # -80 dBFS: below one 16-bit step apart from dither, i.e. digital silence


class AudioError(Exception):
    """Audio that cannot be used; `status` says why and the message says what was seen."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) -> (n,) float32, averaging the channels."""
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling (soxr's high quality); a no-op when the rates agree."""
    if rate_in == rate_out or wave.size == 0:
        return wave
    return soxr.resample(wave, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def _read(source: str | io.BytesIO, name: str) -> tuple[np.ndarray, int, int]:
    try:
        audio, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
        raise AudioError(Status.UNDECODABLE, f"{name}: cannot decode audio ({e})") from None
    return to_mono(audio), int(rate), audio.shape[1]


def read_audio_file(path: Path) -> tuple[np.ndarray, int, int]:
    """Decode a wav/flac/ogg/mp3 file a user names: (mono float32 wave, sample rate, channels in the file).
    AudioError for a file that is missing, cannot be decoded or holds no samples (nothing to listen to)."""
    if not path.is_file():
        raise AudioError(Status.NO_AUDIO, f"{path}: no such file")
    wave, rate, channels = _read(str(path), str(path))
    if wave.size == 0:
        raise AudioError(Status.EMPTY, f"{path}: the file holds no samples")
    return wave, rate, channels


def read_audio_span(
    source: str | io.BytesIO, name: str, offset: float = 0.0, duration: float | None = None, channel: int | None = None
) -> tuple[np.ndarray, int, int]:
    """Decode `duration` seconds from `offset` of a file or in-memory file: (mono float32 wave, rate,
    channels in the file). `channel` keeps that one channel; None mixes them all."""
    try:
        with sf.SoundFile(source) as f:
            rate, channels = f.samplerate, f.channels
            start = int(round(offset * rate))
            if start:
                f.seek(min(start, f.frames))
            frames = -1 if duration is None else int(round(duration * rate))
            audio = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
        raise AudioError(Status.UNDECODABLE, f"{name}: cannot decode audio ({e})") from None
    if channel is not None:
        if not 0 <= channel < channels:
            raise AudioError(Status.UNDECODABLE, f"{name}: no channel {channel} (the file has {channels})")
        return np.ascontiguousarray(audio[:, channel]), int(rate), channels
    return to_mono(audio), int(rate), channels


def decode_audio(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """Decode audio bytes from a tar entry: (mono float32 wave, sample rate)."""
    if not data:
        raise AudioError(Status.EMPTY, f"{name}: the audio entry holds zero bytes")
    wave, rate, _ = _read(io.BytesIO(data), name)
    return wave, rate


def encode_flac(wave: np.ndarray, rate: int) -> bytes:
    """16-bit FLAC. Samples beyond full scale are clipped (FLAC is integer PCM)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def audio_status(wave: np.ndarray, rate: int, min_seconds: float = 0.0) -> Status:
    """Status.OK, or the first reason the clip cannot give targets, in a fixed order of checks."""
    if wave.size == 0:
        return Status.EMPTY
    if not np.isfinite(wave).all():
        return Status.NON_FINITE
    if wave.size / rate < min_seconds:
        return Status.TOO_SHORT
    if float(np.abs(wave).max()) < SILENCE_PEAK:
        return Status.SILENT
    return Status.OK
