"""The inputs of the BEATs reference comparison: the tiny configuration and two clips, made the same way
by the one-off run of Microsoft's BEATs code that wrote fixtures/beats_official.* and by the test."""

from __future__ import annotations

import dataclasses

import numpy as np

from stages.extract.experts.tiny import tiny_beats_config


def reference_cfg(finetuned: bool) -> dict:
    """The tiny cfg in the checkpoint's own form (a dict, as BEATs checkpoints store it)."""
    return dataclasses.asdict(tiny_beats_config(finetuned=finetuned))


def reference_waves() -> list[np.ndarray]:
    """A 3.3 s chirp in noise and a 1.9 s noise burst: two lengths, so the batch holds padding."""
    rng = np.random.default_rng(0)
    t = np.arange(int(3.3 * 16000)) / 16000
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.02 * rng.standard_normal(len(t))
    burst = 0.2 * rng.standard_normal(int(1.9 * 16000)) * np.hanning(int(1.9 * 16000))
    return [chirp.astype(np.float32), burst.astype(np.float32)]
