"""Decoding and resampling in DataLoader workers: tar samples in, mono waves at each expert's rate out."""

from __future__ import annotations

import ctypes
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from stages.audio import AudioError, audio_status, decode_audio, resample
from store_schema.corpus import iter_tar_samples, sample_audio
from store_schema.layout import Status
from store_schema.location import corpus_path, worker_context

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


@dataclass
class DecodedClip:
    shard: int  # position of the shard in the job's list
    index: int  # position of the sample in its shard (the row of `keys`)
    key: str
    seconds: float  # duration of the decoded audio; 0 when it could not be decoded
    status: Status  # Status.OK, or why there is no audio to give the experts
    message: str = ""  # what went wrong, for the run summary
    waves: dict[int, np.ndarray] = field(default_factory=dict)  # sample rate -> mono float32 wave


def decode_sample(shard: int, index: int, sample: dict[str, Any], rates: list[int]) -> DecodedClip:
    """Decode one tar sample once and resample it to every rate the experts need."""
    key = sample["__key__"]
    audio = sample_audio(sample)
    if audio is None:
        return DecodedClip(shard, index, key, 0.0, Status.NO_AUDIO, f"{key}: no audio entry in the tar sample")
    data, ext = audio
    try:
        wave, rate = decode_audio(data, f"{key}.{ext}")
    except AudioError as e:
        return DecodedClip(shard, index, key, 0.0, e.status, str(e))
    seconds = wave.size / rate
    status = audio_status(wave, rate)
    if status != Status.OK:
        return DecodedClip(shard, index, key, seconds, status, f"{key}: {status.reason} ({seconds:.2f} s)")
    return DecodedClip(shard, index, key, seconds, status, waves={r: resample(wave, rate, r) for r in rates})


class DecodedClips(IterableDataset):
    """Every sample of the given tars, in order per worker; worker w of W decodes samples w, w+W, ….

    Each worker reads the tars' bytes but decodes only its share, so decoding scales with workers
    while every sample is yielded exactly once.
    """

    def __init__(self, tars: list[Path], rates: list[int]) -> None:
        # As text: each worker opens its own object-store client (fsspec clients do not survive a fork).
        self.tars, self.rates = [str(t) for t in tars], sorted(set(rates))

    def __iter__(self):  # type: ignore[override]
        worker = get_worker_info()
        wid, nworkers = (worker.id, worker.num_workers) if worker else (0, 1)
        position = 0
        for shard, tar in enumerate(self.tars):
            for index, sample in enumerate(iter_tar_samples(corpus_path(tar))):
                if position % nworkers == wid:
                    yield decode_sample(shard, index, sample, self.rates)
                position += 1


def _keep(clip: DecodedClip) -> DecodedClip:
    return clip  # no collation: clips differ in length and carry dicts


def _die_with_parent(worker_id: int) -> None:
    """Linux: a worker gets SIGKILL when the main process dies, instead of lingering as an orphan."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def clip_loader(tars: list[Path], rates: list[int], num_workers: int) -> DataLoader:
    """The tars' clips decoded by `num_workers` processes (0: in this one)."""
    return DataLoader(
        DecodedClips(tars, rates),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_keep,
        worker_init_fn=_die_with_parent,
        prefetch_factor=8 if num_workers else None,
        multiprocessing_context=worker_context(tars[0], __name__) if tars and num_workers else None,
    )


def length_batches(clips: list[DecodedClip], batch_seconds: float) -> list[list[DecodedClip]]:
    """Sort by duration and cut into batches whose padded size (count x longest) stays within budget.

    A clip longer than the budget forms a batch of its own.
    """
    batches: list[list[DecodedClip]] = []
    current: list[DecodedClip] = []
    for clip in sorted(clips, key=lambda c: c.seconds):
        if current and (len(current) + 1) * clip.seconds > batch_seconds:
            batches.append(current)
            current = []
        current.append(clip)
    if current:
        batches.append(current)
    return batches
