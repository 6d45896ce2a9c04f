"""From an expert's native frames to store frames and a clip target, by timestamp and by kind.

Store frame j covers [j / rate, (j + 1) / rate) seconds. A native frame belongs to the store frame
that holds its centre. Most kinds average the frames they hold (embeddings, spectra and probabilities
are means; logits are the mean of logits). Pitch averages cents (and any column read off them, such as
the pitch class) over voiced frames only and keeps the mean voicing probability. A store frame that
holds no native frame (an expert slower than the store rate) takes the native frame nearest its centre.
"""

from __future__ import annotations

import numpy as np

from store_schema.layout import VOICED_THRESHOLD, VOICING_COLUMN, voiced_columns


def num_store_frames(seconds: float, store_rate: float) -> int:
    """round(seconds x rate), at least one: the frame count every expert stores for a clip."""
    return max(1, int(round(seconds * store_rate)))


def _binned_mean(
    values: np.ndarray, bins: np.ndarray, weights: np.ndarray, n_out: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of rows of `values` (T, D) per bin; returns (means (n_out, D), total weight (n_out,)).

    `bins` must be non-decreasing (frame times are), so each bin is one contiguous run: reduceat.
    """
    sums = np.zeros((n_out, values.shape[1]), dtype=np.float64)
    present, starts = np.unique(bins, return_index=True)
    sums[present] = np.add.reduceat(values * weights[:, None], starts, axis=0)
    total = np.bincount(bins, weights=weights, minlength=n_out)
    return sums / np.maximum(total, 1e-12)[:, None], total


def pool_to_store_rate(
    frames: np.ndarray, times: np.ndarray, seconds: float, store_rate: float, kind: str
) -> np.ndarray:
    """(T_native, D) frames with centres `times` (s) -> (num_store_frames, D) float32 targets."""
    n_out = num_store_frames(seconds, store_rate)
    if frames.ndim != 2 or len(frames) != len(times) or len(frames) == 0:
        raise ValueError(f"expected (T, D) frames with T = {len(times)} > 0 timestamps, got shape {frames.shape}")
    if (np.diff(times) < 0).any():
        raise ValueError("frame times must be non-decreasing")
    bins = np.clip(np.floor(times * store_rate).astype(np.int64), 0, n_out - 1)
    ones = np.ones(len(frames))
    pooled, count = _binned_mean(frames, bins, ones, n_out)
    if kind == "pitch":
        voiced = (frames[:, VOICING_COLUMN] >= VOICED_THRESHOLD).astype(np.float64)
        columns = voiced_columns(frames.shape[1])
        means, voiced_count = _binned_mean(frames[:, columns], bins, voiced, n_out)
        pooled[:, columns] = np.where(voiced_count[:, None] > 0, means, 0.0)  # unvoiced: 0, voicing says so
    empty = count == 0
    if empty.any():
        centres = (np.flatnonzero(empty) + 0.5) / store_rate
        nearest = np.abs(times[None, :] - centres[:, None]).argmin(axis=1)
        pooled[empty] = frames[nearest]
    return pooled.astype(np.float32)


def pool_clip(frames: np.ndarray, kind: str) -> np.ndarray:
    """The whole-clip target (D,): the mean frame; for pitch, the voiced frames' mean cents (and pitch
    class) and the voiced fraction."""
    clip = frames.astype(np.float64).mean(axis=0)
    if kind == "pitch":
        voiced = frames[:, VOICING_COLUMN] >= VOICED_THRESHOLD
        columns = voiced_columns(frames.shape[1])
        clip[columns] = frames[voiced][:, columns].mean(axis=0) if voiced.any() else 0.0
        clip[VOICING_COLUMN] = voiced.mean()
    return clip.astype(np.float32)
