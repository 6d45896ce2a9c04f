"""From stored frames to the K slot targets the heads learn, standardised with the store's stats.

Slot k is aligned to the k-th K-th of the clip: it averages the store frames whose centres fall in
that span. When the clip has fewer frames than slots, an empty slot takes the frame under its centre,
so every slot is defined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from store_schema.layout import VOICED_THRESHOLD, VOICING_COLUMN, voiced_columns
from store_schema.stats import ExpertStats, StatsSummary

STANDARDISED = ("embedding", "spectrum")  # regression targets; probs and logits keep their scale


@dataclass(frozen=True)
class TargetSpec:
    """What the heads need to know about one expert's targets: kind, size and the store's stats."""

    expert: str
    kind: str
    dim: int
    fingerprint: str
    frame_mean: np.ndarray  # (D,)
    frame_std: np.ndarray  # (D,)
    clip_mean: np.ndarray  # (D,)
    clip_std: np.ndarray  # (D,)

    @classmethod
    def from_stats(cls, stats: ExpertStats) -> TargetSpec:
        """From the store's stats record (`stats/<expert>.json`, or its copy in a model bundle)."""

        def arr(values: np.ndarray) -> np.ndarray:
            return np.asarray(values, dtype=np.float32)

        frames, clip = stats.frames, stats.clip
        return cls(
            stats.expert,
            stats.kind,
            stats.dim,
            stats.fingerprint,
            arr(frames.mean),
            arr(frames.std),
            arr(clip.mean),
            arr(clip.std),
        )

    def to_stats(self) -> ExpertStats:
        """The record a model bundle carries (without the counts, which stay with the store)."""
        frames, clip = StatsSummary(self.frame_mean, self.frame_std), StatsSummary(self.clip_mean, self.clip_std)
        return ExpertStats(self.expert, self.fingerprint, self.kind, self.dim, frames, clip)

    def standardise(self, values: np.ndarray, clip: bool = False) -> np.ndarray:
        """Per-dimension z-scores where the kind is a regression; pitch z-scores cents only."""
        mean, std = (self.clip_mean, self.clip_std) if clip else (self.frame_mean, self.frame_std)
        out = values.astype(np.float32).copy()
        if self.kind in STANDARDISED:
            out = (out - mean) / std
        elif self.kind == "pitch":
            out[..., 0] = (out[..., 0] - mean[0]) / std[0]
        return out


def pool_to_slots(frames: np.ndarray, k: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) store frames -> (K, D) slot targets and a (K, D) mask of defined entries.

    For pitch, slot cents (and every other column but the voicing) average voiced frames only and are
    masked where a slot has none.
    """
    t, d = frames.shape
    if t == 0:
        raise ValueError("a clip with an ok status has at least one store frame")
    x = frames.astype(np.float64)
    slot_of_frame = np.minimum(((np.arange(t) + 0.5) / t * k).astype(np.int64), k - 1)  # by relative time
    sums = np.zeros((k, d))
    np.add.at(sums, slot_of_frame, x)
    counts = np.bincount(slot_of_frame, minlength=k)
    empty = counts == 0
    slots = sums / np.maximum(counts, 1)[:, None]
    nearest = np.minimum(((np.arange(k) + 0.5) / k * t).astype(np.int64), t - 1)
    slots[empty] = x[nearest[empty]]
    mask = np.ones((k, d), dtype=bool)
    if kind == "pitch":  # cents over voiced frames only; a slot without one has no cents target
        columns = voiced_columns(d)
        voiced = x[:, VOICING_COLUMN] >= VOICED_THRESHOLD
        voiced_sum = np.zeros((k, len(columns)))
        np.add.at(voiced_sum, slot_of_frame[voiced], x[voiced][:, columns])
        voiced_count = np.bincount(slot_of_frame[voiced], minlength=k)
        has_voiced = voiced_count > 0
        means = voiced_sum / np.maximum(voiced_count, 1)[:, None]
        near = nearest[empty]
        means[empty], has_voiced[empty] = x[near][:, columns], voiced[near]
        slots[:, columns] = np.where(has_voiced[:, None], means, 0.0)
        mask[:, columns] = has_voiced[:, None]
    return slots.astype(np.float32), mask


@dataclass
class SlotTargets:
    """One expert's targets for a batch."""

    slots: torch.Tensor  # (B, K, D)
    slot_mask: torch.Tensor  # (B, K, D) float, 1 where the target is defined
    clip: torch.Tensor  # (B, D)
    clip_mask: torch.Tensor  # (B, D) float
    valid: torch.Tensor  # (B,) float, 0 for a clip this expert has no targets for

    def to(self, device: torch.device | str) -> SlotTargets:
        return SlotTargets(*(t.to(device) for t in (self.slots, self.slot_mask, self.clip, self.clip_mask, self.valid)))


def make_targets(
    spec: TargetSpec, frames: list[np.ndarray | None], clips: list[np.ndarray | None], k: int
) -> SlotTargets:
    """Batch the targets of one expert; a None entry (bad status) gives a zero row with valid 0."""
    b, d = len(frames), spec.dim
    slots, slot_mask = np.zeros((b, k, d), np.float32), np.zeros((b, k, d), np.float32)
    clip, clip_mask, valid = np.zeros((b, d), np.float32), np.zeros((b, d), np.float32), np.zeros(b, np.float32)
    for i, (f, c) in enumerate(zip(frames, clips)):
        if f is None or c is None:
            continue
        s, m = pool_to_slots(f, k, spec.kind)
        slots[i], slot_mask[i] = spec.standardise(s), m
        clip[i] = spec.standardise(c, clip=True)
        clip_mask[i] = 1.0
        if spec.kind == "pitch":  # clip cents exist when any frame was voiced
            clip_mask[i, voiced_columns(d)] = float(c[VOICING_COLUMN] > 0)
        valid[i] = 1.0
    as_t = torch.from_numpy
    return SlotTargets(as_t(slots), as_t(slot_mask), as_t(clip), as_t(clip_mask), as_t(valid))
