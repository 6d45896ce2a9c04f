"""`pitch`: F0 in cents and voicing probability from swift-f0, whose ONNX model ships inside its wheel;
`pitch-class`: the same, plus where the F0 falls within its octave (the note, whatever the octave)."""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from stages.extract.experts.base import Expert
from store_schema.layout import CENTS_REFERENCE_HZ


def hz_to_cents(hz: np.ndarray) -> np.ndarray:
    return 1200.0 * np.log2(np.maximum(hz, 1e-3) / CENTS_REFERENCE_HZ)


def cents_to_hz(cents: np.ndarray) -> np.ndarray:
    return CENTS_REFERENCE_HZ * 2.0 ** (np.asarray(cents, dtype=np.float64) / 1200.0)


def pitch_class(cents: np.ndarray) -> np.ndarray:
    """(T,) cents -> (T, 2): sine and cosine of 2π (cents mod 1200) / 1200, the position within the octave
    on a circle (so B and the C above it are neighbours, and a mean over frames stays meaningful)."""
    angle = 2 * np.pi * np.mod(cents, 1200.0) / 1200.0
    return np.stack([np.sin(angle), np.cos(angle)], axis=1)


class PitchExpert(Expert):
    """swift-f0 at 16 kHz, one frame per 256 samples (62.5 Hz): columns (cents above 10 Hz, voicing).

    Runs on CPU through onnxruntime whatever `device` says (the model is small); clips are
    processed one by one, since the model takes one signal per call.
    """

    name = "pitch"
    kind = "pitch"
    hears, model_name, rates, weights = "pitch", "swift-f0", "16 kHz -> 62.5 Hz", "inside the swift-f0 wheel"
    dtype_matters = False  # onnxruntime in float32
    sample_rate = 16000
    dim = 2

    def __init__(self, device: str = "cpu", dtype: str = "float32", threads: int | None = None) -> None:
        import swift_f0

        self._detector = swift_f0.SwiftF0(threads=threads)
        self.frame_rate = 1.0 / swift_f0.FRAME_PERIOD
        model_file = Path(swift_f0.__file__).with_name("model.onnx")
        self._checksum = hashlib.sha256(model_file.read_bytes()).hexdigest()[:16]

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for wave in waves:
            result = self._detector.detect(wave, self.sample_rate)
            frames = np.stack([hz_to_cents(result.pitch_hz), result.confidence], axis=1)
            out.append(frames.astype(np.float32))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "model": f"swift-f0=={version('swift-f0')}",
            "revision": f"sha256:{self._checksum}",
            "layer": None,
            "options": {"cents_reference_hz": CENTS_REFERENCE_HZ},
        }


class PitchClassExpert(PitchExpert):
    """`pitch` with the pitch class added: columns (cents, voicing, sin, cos of the pitch class).

    The fifth registration's option of the pitch expert (docs/EXPERIMENTS.md), under its own name so its
    store sits beside `pitch`'s. The pitch class is defined on voiced frames, like cents: pooling and the
    loss use it only there. The cents reference is 10 Hz, so the angle 0 is the pitch class of 10 Hz.
    """

    name = "pitch-class"
    hears = "pitch and pitch class"
    dim = 4

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return [
            np.concatenate([frames, pitch_class(frames[:, 0])], axis=1).astype(np.float32)
            for frames in super().__call__(waves)
        ]

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        return described | {"options": described["options"] | {"pitch_class": "sin, cos of 2pi (cents mod 1200)/1200"}}
