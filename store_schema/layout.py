"""The store's layout: schema version, node names, status codes and the record of how a group was made."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DEFAULT_STORE_RATE = 12.5  # Hz: one store frame per 80 ms
MIN_STORE_RATE, MAX_STORE_RATE = 0.5, 200.0  # Hz: the rates a store may have (extract's and every reader's check)

KEYS = "keys"  # (N,) str, the tar's __key__ order
FRAMES, OFFSETS, CLIP, STATUS = "frames", "offsets", "clip", "status"
TMP_MARK = ".tmp-"  # an expert group is written as "<expert>.tmp-<pid>" and renamed when complete
STATS_DIR = "stats"
LOCK_DIR = ".coat-locks"  # flock files, one per shard; the kernel drops them when a process dies
FRAME_CHUNK = 4096  # frames per chunk of `frames`: a few hundred kB of float16

KINDS = ("embedding", "spectrum", "probs", "logits", "pitch")

# Pitch targets are (cents, voicing probability, then any columns read off the cents, such as the pitch
# class's sine and cosine). Cents are counted from 10 Hz, the convention of CREPE, so every audible pitch
# is positive; a frame is voiced at probability >= 0.5. Every column but the voicing is defined on voiced
# frames only: pooling averages it over them, and a slot or clip with none has no target there.
CENTS_REFERENCE_HZ = 10.0
VOICED_THRESHOLD = 0.5
VOICING_COLUMN = 1


def voiced_columns(dim: int) -> list[int]:
    """The columns of a pitch target defined on voiced frames only: all but the voicing."""
    return [c for c in range(dim) if c != VOICING_COLUMN]


class Status(IntEnum):
    """Why a clip has no targets. Stored per clip and expert in `status`; 0 means targets exist."""

    OK = 0
    UNDECODABLE = 1  # the audio bytes could not be decoded
    EMPTY = 2  # decoded to zero samples
    TOO_SHORT = 3  # shorter than one store frame or the expert's minimum
    NON_FINITE = 4  # NaN or Inf samples
    SILENT = 5  # peak below SILENCE_PEAK: digital silence
    NO_AUDIO = 6  # the sample has no audio entry in the tar
    EXPERT_FAILED = 7  # the expert raised or returned non-finite values on this clip

    @property
    def reason(self) -> str:
        return self.name.lower().replace("_", " ")


def shard_store_path(tar: Path) -> Path:
    """The Zarr store that sits beside a tar shard: `train-000000.tar` -> `train-000000.zarr`."""
    return tar.with_suffix(".zarr")


def stats_path(corpus_root: Path, expert: str) -> Path:
    return corpus_root / STATS_DIR / f"{expert}.json"


def is_temp_group(name: str) -> bool:
    return TMP_MARK in name


@dataclass(frozen=True)
class ExpertSpec:
    """Everything that decides an expert group's numbers; its fingerprint guards resume and training."""

    expert: str  # registry name, e.g. "mel"
    model: str  # hub id, checkpoint path or package that holds the weights
    revision: str  # hub revision, or a checksum of the weights/code that made the numbers
    layer: str | None  # which layer's output, where the model has several
    kind: str  # one of KINDS: decides pooling, stats and the training loss
    sample_rate: int  # Hz of the audio the expert reads
    native_rate: float  # Hz of the expert's own frames
    store_rate: float  # Hz of the stored frames
    dim: int  # D, features per frame
    pooling: str  # how native frames become store frames (see stages.extract.pooling)
    code_version: str  # bumped when the expert's code changes its output
    options: dict[str, Any] = field(default_factory=dict)  # the expert's own settings

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"expert {self.expert!r}: kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def fingerprint(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_attrs(self) -> dict[str, Any]:
        return {**asdict(self), "fingerprint": self.fingerprint}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> ExpertSpec:
        names = cls.__dataclass_fields__.keys()
        return cls(**{name: attrs[name] for name in names if name in attrs})
