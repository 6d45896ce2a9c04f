"""The store's stats: per-dimension mean and std of each expert's targets, accumulated shard by shard and
merged exactly, and `ExpertStats`, the typed record of `stats/<expert>.json` with its reader and writer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from store_schema.corpus import CorpusInfo
from store_schema.layout import (
    VOICED_THRESHOLD,
    VOICING_COLUMN,
    ExpertSpec,
    shard_store_path,
    stats_path,
    voiced_columns,
)
from store_schema.location import replace_file
from store_schema.reader import ShardStore


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
    """Which entries count: for pitch, cents (every column but the voicing) only where voiced (a frame at
    probability >= 0.5, a clip with any voiced frame: its second column is the voiced fraction)."""
    if kind != "pitch":
        return None
    mask = np.ones(values.shape, dtype=bool)
    voicing = values[:, VOICING_COLUMN]
    mask[:, voiced_columns(values.shape[1])] = (voicing > 0 if clip else voicing >= VOICED_THRESHOLD)[:, None]
    return mask


@dataclass(frozen=True)
class StatsSummary:
    """Mean and std per dimension of one target (frames or clip); count is None in a model bundle's copy."""

    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,), every value > 0
    count: np.ndarray | None = None  # (D,) values that went into it

    @classmethod
    def of(cls, s: RunningStats) -> StatsSummary:
        # A dimension never observed (e.g. cents in an all-unvoiced corpus) gets std 1, not 0.
        return cls(s.mean, np.where(s.count > 0, np.maximum(s.std, 1e-6), 1.0), s.count)

    def to_json(self) -> dict[str, list[float]]:
        out = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        return out | ({"count": self.count.tolist()} if self.count is not None else {})

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StatsSummary:
        count = np.asarray(d["count"], dtype=float) if "count" in d else None
        return cls(np.asarray(d["mean"], dtype=float), np.asarray(d["std"], dtype=float), count)


@dataclass(frozen=True)
class ExpertStats:
    """`stats/<expert>.json`: what training standardises an expert's targets with.

    `clips` and `shards` say what it was computed over; a model bundle carries the record without them."""

    expert: str
    fingerprint: str
    kind: str
    dim: int
    frames: StatsSummary
    clip: StatsSummary
    clips: int | None = None
    shards: int | None = None

    def to_json(self) -> dict[str, Any]:
        head = {"expert": self.expert, "fingerprint": self.fingerprint, "kind": self.kind, "dim": self.dim}
        counts = {k: v for k, v in (("clips", self.clips), ("shards", self.shards)) if v is not None}
        return head | counts | {"frames": self.frames.to_json(), "clip": self.clip.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExpertStats:
        """The record, or ValueError when a field is missing, a value is NaN/Inf or a std is not positive."""
        try:
            stats = cls(
                str(d["expert"]),
                str(d["fingerprint"]),
                str(d["kind"]),
                int(d["dim"]),
                StatsSummary.from_json(d["frames"]),
                StatsSummary.from_json(d["clip"]),
                d.get("clips"),
                d.get("shards"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a stats record ({type(e).__name__}: {e})") from None
        values = [stats.frames.mean, stats.frames.std, stats.clip.mean, stats.clip.std]
        if any(v.shape != (stats.dim,) for v in values):
            raise ValueError(f"not a stats record (a mean or std is not of dim {stats.dim})")
        if not all(np.isfinite(v).all() for v in values):
            raise ValueError("holds NaN or Inf")
        if any((v <= 0).any() for v in values[1::2]):
            raise ValueError("holds a standard deviation that is not positive")
        return stats

    def matches(self, other: ExpertStats) -> bool:
        """The same values up to float rounding, over the same clips."""
        return self.clips == other.clips and all(
            np.allclose(a, b, rtol=1e-3, atol=1e-5)
            for a, b in (
                (self.frames.mean, other.frames.mean),
                (self.frames.std, other.frames.std),
                (self.clip.mean, other.clip.mean),
                (self.clip.std, other.clip.std),
            )
        )


def read_stats(corpus_root: Path, expert: str) -> ExpertStats | None:
    """`stats/<expert>.json`, None when absent; ValueError naming the file when it is not a sound record."""
    path = stats_path(corpus_root, expert)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable stats file ({type(e).__name__}: {e})") from None
    try:
        return ExpertStats.from_json(record)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def write_stats(corpus_root: Path, stats: ExpertStats) -> Path:
    """Write atomically: two processes finishing the last shards at once both write the same file."""
    path = stats_path(corpus_root, stats.expert)
    replace_file(path, json.dumps(stats.to_json(), indent=1).encode())
    return path


def finalize_stats(corpus: CorpusInfo, spec: ExpertSpec) -> bool:
    """Merge the groups' partial stats into `stats/<expert>.json` if every shard's group is in place."""
    frames, clip, clips = RunningStats.empty(spec.dim), RunningStats.empty(spec.dim), 0
    for shard in corpus.shards:
        path = shard_store_path(corpus.tar_path(shard))
        if not (path / spec.expert / "zarr.json").is_file():
            return False
        attrs = ShardStore(path).expert(spec.expert).attrs
        if attrs.get("fingerprint") != spec.fingerprint:
            return False
        frames.merge(RunningStats.from_dict(attrs["partial_stats"]["frames"]))
        clip.merge(RunningStats.from_dict(attrs["partial_stats"]["clip"]))
        clips += int(attrs["status_counts"].get("ok", 0))
    summaries = StatsSummary.of(frames), StatsSummary.of(clip)
    stats = ExpertStats(spec.expert, spec.fingerprint, spec.kind, spec.dim, *summaries, clips, len(corpus.shards))
    write_stats(corpus.root, stats)
    return True


def compute_stats(corpus: CorpusInfo, expert: str, rows_per_read: int = 65536) -> ExpertStats:
    """The stats of one expert computed from the stored frames and clip targets (not the partial sums)."""
    frames_stats, clip_stats, clips, spec = None, None, 0, None
    for shard in corpus.shards:
        group = ShardStore.for_tar(corpus.tar_path(shard)).expert(expert)
        if spec is not None and group.spec.fingerprint != spec.fingerprint:
            raise ValueError(f"{shard.name}: {expert!r} fingerprint differs from the first shard's; run store check")
        spec = group.spec
        if frames_stats is None or clip_stats is None:
            frames_stats, clip_stats = RunningStats.empty(spec.dim), RunningStats.empty(spec.dim)
        total = group.frames.shape[0]
        for start in range(0, total, rows_per_read):
            block = group.frames[start : start + rows_per_read]
            frames_stats.update(block, stats_mask(spec.kind, block))
        ok = group.status == 0
        clip_block = group.clip[:][ok]
        clip_stats.update(clip_block, stats_mask(spec.kind, clip_block, clip=True))
        clips += int(ok.sum())
    if spec is None or frames_stats is None or clip_stats is None:
        raise ValueError("the corpus has no shards")
    summaries = StatsSummary.of(frames_stats), StatsSummary.of(clip_stats)
    return ExpertStats(expert, spec.fingerprint, spec.kind, spec.dim, *summaries, clips, len(corpus.shards))


def pool_stats(parts: list[ExpertStats]) -> ExpertStats:
    """The stats of one expert over several corpora, exactly, from each corpus's own record: counts, means and
    standard deviations merged as the shards of one corpus are. The records must share the fingerprint (the
    same making: otherwise the targets are not comparable) and carry their counts."""
    first = parts[0]
    if any(p.fingerprint != first.fingerprint for p in parts):
        raise ValueError(f"{first.expert!r} was extracted with other options in some corpora (fingerprints differ)")
    if any(p.frames.count is None or p.clip.count is None for p in parts):
        raise ValueError(f"{first.expert!r}: a stats record without counts cannot be pooled")
    pooled = []
    for side in ("frames", "clip"):
        total = RunningStats.empty(first.dim)
        for part in parts:
            summary: StatsSummary = getattr(part, side)
            count = summary.count if summary.count is not None else np.zeros(first.dim)
            std = np.where(count > 0, summary.std, 0.0)  # an unobserved dimension's std 1 is a placeholder
            total.merge(RunningStats(count.astype(float), summary.mean.astype(float), std**2 * count))
        pooled.append(StatsSummary.of(total))
    clips = sum(p.clips or 0 for p in parts)
    shards = sum(p.shards or 0 for p in parts)
    return ExpertStats(first.expert, first.fingerprint, first.kind, first.dim, pooled[0], pooled[1], clips, shards)
