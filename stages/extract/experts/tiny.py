"""Tiny randomly initialised experts of the real classes, saved the way real weights are published (for tests
and `coat-pipe bench extract --tiny`: no download). Each expert class builds its own (`Expert.build_tiny`);
this is the one call that names the folder and seeds the draw."""

from __future__ import annotations

from pathlib import Path

import torch

from stages.extract.experts import expert_class
from stages.extract.experts.beats import tiny_beats_config
from stages.extract.experts.speech_encoder import TINY_SPEECH

__all__ = ["TINY_SPEECH", "make_tiny", "tiny_beats_config"]


def make_tiny(name: str, root: Path) -> Path:
    """Write a tiny `name` expert under root/name in its official format; returns what --checkpoint takes."""
    torch.manual_seed(0)
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    path = expert_class(name).build_tiny(out)
    if path is None:
        raise ValueError(f"{name} has no weights to make")
    return path
