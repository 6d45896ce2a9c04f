"""Per-dimension mean and std of a target, accumulated shard by shard and merged exactly."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from store_schema.layout import VOICED_THRESHOLD


@dataclass
class RunningStats:
    """Count, mean and sum of squared deviations per dimension (Chan et al.'s parallel update).

    Counts are per dimension because pitch cents only count voiced frames.
    """

    count: np.ndarray  # (D,) float64
    mean: np.ndarray  # (D,) float64
    m2: np.ndarray  # (D,) float64

    @classmethod
    def empty(cls, dim: int) -> RunningStats:
        return cls(np.zeros(dim), np.zeros(dim), np.zeros(dim))

    def update(self, values: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add rows of `values` (N, D); `mask` (N, D) keeps only the True entries."""
        x = values.astype(np.float64)
        m = np.ones_like(x, dtype=bool) if mask is None else mask
        n = m.sum(axis=0).astype(np.float64)
        if not n.any():
            return
        safe_n = np.maximum(n, 1)
        mean = np.where(m, x, 0).sum(axis=0) / safe_n
        m2 = (np.where(m, x - mean, 0) ** 2).sum(axis=0)
        self.merge(RunningStats(n, mean, m2))

    def merge(self, other: RunningStats) -> None:
        total = self.count + other.count
        safe_total = np.maximum(total, 1)
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.count / safe_total
        self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / safe_total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / np.maximum(self.count, 1))

    def to_dict(self) -> dict[str, list[float]]:
        return {"count": self.count.tolist(), "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> RunningStats:
        return cls(np.asarray(d["count"], float), np.asarray(d["mean"], float), np.asarray(d["m2"], float))


def stats_mask(kind: str, values: np.ndarray, *, clip: bool = False) -> np.ndarray | None:
    """Which entries count: for pitch, cents only where voiced (a frame at probability >= 0.5,
    a clip with any voiced frame: its second column is the voiced fraction)."""
    if kind != "pitch":
        return None
    mask = np.ones(values.shape, dtype=bool)
    mask[:, 0] = values[:, 1] > 0 if clip else values[:, 1] >= VOICED_THRESHOLD
    return mask


def write_stats_file(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: two processes finishing the last shards at once both write the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def stats_payload(
    expert: str, fingerprint: str, kind: str, frames: RunningStats, clip: RunningStats, clips: int, shards: int
) -> dict[str, Any]:
    """The content of `stats/<expert>.json`: what training standardises targets with."""

    def summary(s: RunningStats) -> dict[str, list[float]]:
        # A dimension never observed (e.g. cents in an all-unvoiced corpus) gets std 1, not 0.
        std = np.where(s.count > 0, np.maximum(s.std, 1e-6), 1.0)
        return {"mean": s.mean.tolist(), "std": std.tolist(), "count": s.count.tolist()}

    return {
        "expert": expert,
        "fingerprint": fingerprint,
        "kind": kind,
        "dim": int(len(frames.mean)),
        "clips": clips,
        "shards": shards,
        "frames": summary(frames),
        "clip": summary(clip),
    }
