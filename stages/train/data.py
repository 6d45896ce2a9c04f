"""The training stream: tar shards and their store groups read in step, planned per epoch, split over ranks.

Every rank computes the same epoch plan from `corpus.json` and the stores' status arrays (a few bytes
per clip), so step counts agree across ranks without any communication and a resumed run sees exactly
the batches an uninterrupted run would:

  1. usable clips: status ok in every chosen expert (the rest are counted and skipped);
  2. shard order shuffled by (seed, epoch), clips in tar order, then shuffled within windows of
     `shuffle_window` clips (a sample buffer that keeps reads close together);
  3. padded to a multiple of world × batch by repeating the epoch's first clips (DistributedSampler's
     rule), then clip p goes to rank p mod world and the rank's clips are cut into batches.

DataLoader workers then load whole batches: each sample is read from its tar by offset (a tar index
built from the headers), decoded, and paired with its store frames, read a chunk at a time through one
cache per worker. Which corpus and epoch each micro-step takes is `stages/train/stream.py`'s; a
checkpoint stores the micro-step.
"""

from __future__ import annotations

import traceback
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from stages.audio import AudioError
from stages.train.batch import CoatSample, coat_sample
from stages.train.stop_signal import ignore_stop_signals, stop_signals_blocked
from stages.train.targets import TargetSpec
from store_schema.check import check_store
from store_schema.corpus import CorpusInfo, TarIndex, read_corpus
from store_schema.errors import UserError
from store_schema.layout import MAX_STORE_RATE, MIN_STORE_RATE, Status
from store_schema.location import corpus_path, is_remote, worker_context
from store_schema.reader import ShardStore
from store_schema.stats import read_stats

Item = tuple[int, int]  # (shard position in corpus.json, sample index in the shard)


def preflight(corpus: CorpusInfo, experts: list[str]) -> dict[str, TargetSpec]:
    """Refuse a store that cannot be trusted, before any model is built: name the shard and the fix."""
    problems = check_store(corpus, experts)
    if problems:
        lines = "\n".join(f"  {p.shard}: {p.what} → {p.fix}" for p in problems[:12])
        more = f"\n  … and {len(problems) - 12} more" if len(problems) > 12 else ""
        raise UserError(
            f"the store of {corpus.root} is not ready for training:\n{lines}{more}\n"
            f"Run `coat-pipe store check {corpus.root}` for the full table."
        )
    return {e: TargetSpec.from_stats(read_stats(corpus.root, e)) for e in experts}  # type: ignore[arg-type]


@dataclass(frozen=True)
class EpochPlan:
    """Which clips each rank sees in one epoch, batch by batch."""

    batches: list[list[Item]]  # this rank's batches, in order
    padded: int  # clips repeated to fill the last global step
    skipped: Counter  # status name -> clips left out (bad status in a chosen expert)


def usable_items(corpus: CorpusInfo, experts: list[str]) -> tuple[list[list[int]], Counter]:
    """Per shard, the sample indices whose status is ok in every chosen expert; and the skips by status. With no
    expert (a --no-think run) every clip is usable and no store is opened: it may not exist yet."""
    if not experts:
        return [list(range(shard.samples)) for shard in corpus.shards], Counter()
    usable, skipped = [], Counter()
    for shard in corpus.shards:
        store = ShardStore.for_tar(corpus.tar_path(shard))
        worst = np.zeros(shard.samples, dtype=np.uint8)
        for expert in experts:
            worst = np.maximum(worst, store.expert(expert).status)
        usable.append(np.flatnonzero(worst == Status.OK).tolist())
        skipped.update(Status(int(s)).name.lower() for s in worst[worst != Status.OK])
    return usable, skipped


def store_rate(corpus: CorpusInfo, expert: str) -> float:
    """The store frame rate (Hz) of a corpus, from one expert group's record; UserError when it is not a rate a
    store may have (a store altered by hand: training would cut its frames at the wrong times)."""
    group = ShardStore.for_tar(corpus.tar_path(corpus.shards[0])).expert(expert)
    rate = group.attrs.get("store_rate")
    if not isinstance(rate, int | float) or not MIN_STORE_RATE <= rate <= MAX_STORE_RATE:
        raise UserError(f"{corpus.tar_path(corpus.shards[0])}: {expert} store rate {rate!r} Hz is not a store's rate")
    return float(rate)


def clip_lengths(corpus: CorpusInfo, expert: str) -> list[np.ndarray]:
    """Per shard, each clip's length in store frames (from one expert's offsets): the key that groups batches."""
    return [np.diff(ShardStore.for_tar(corpus.tar_path(s)).expert(expert).offsets) for s in corpus.shards]


def _epoch_items(usable: list[list[int]], rng: np.random.Generator, shuffle_window: int) -> list[Item]:
    """Shard order shuffled, clips in tar order, then shuffled within windows of `shuffle_window` clips."""
    items: list[Item] = [(s, i) for s in rng.permutation(len(usable)) for i in usable[s]]
    for start in range(0, len(items), shuffle_window):
        window = items[start : start + shuffle_window]
        items[start : start + shuffle_window] = [window[j] for j in rng.permutation(len(window))]
    if not items:
        raise UserError("no usable clips: every clip has a bad status in one of the chosen experts")
    return items


def _epoch_rng(seed: int | list[int], epoch: int) -> np.random.Generator:
    return np.random.default_rng([*seed, epoch] if isinstance(seed, list) else [seed, epoch])


def plan_epoch(
    usable: list[list[int]],
    skipped: Counter,
    epoch: int,
    seed: int | list[int],
    rank: int,
    world: int,
    batch_size: int,
    shuffle_window: int = 256,
    lengths: list[np.ndarray] | None = None,
) -> EpochPlan:
    """The deterministic plan of one epoch for one rank (the same inputs give the same plan everywhere).

    With `lengths`, each window is sorted by length and cut into global steps of similar clips, whose
    order is then shuffled: batches pad less, and every rank's batch in a step is alike in length."""
    rng = _epoch_rng(seed, epoch)
    items = _epoch_items(usable, rng, shuffle_window)
    step = world * batch_size
    padded = -len(items) % step
    items = items + [items[j % len(items)] for j in range(padded)]
    if lengths is not None:
        window = max(step, shuffle_window // step * step)
        for start in range(0, len(items), window):
            chunk = sorted(items[start : start + window], key=lambda item: int(lengths[item[0]][item[1]]))
            groups = [chunk[g : g + step] for g in range(0, len(chunk), step)]
            items[start : start + window] = [item for g in rng.permutation(len(groups)) for item in groups[g]]
    mine = items[rank::world]
    return EpochPlan([mine[j : j + batch_size] for j in range(0, len(mine), batch_size)], padded, skipped)


BUCKET_POOL = 8  # shuffle windows sorted together by length when batches are filled to a duration budget


def plan_epoch_by_duration(
    usable: list[list[int]],
    skipped: Counter,
    epoch: int,
    seed: int | list[int],
    rank: int,
    world: int,
    batch_seconds: float,
    lengths: list[np.ndarray],
    store_rate: float,
    max_clips: int | None = None,
    shuffle_window: int = 256,
) -> EpochPlan:
    """Batches filled up to `batch_seconds` of padded audio (clips × the longest clip's seconds) per rank.

    The epoch's clips are shuffled as in `plan_epoch`, then sorted by length within pools of
    BUCKET_POOL shuffle windows (duration buckets that keep reads near each other) and cut greedily into
    batches under the budget (and `max_clips`). Consecutive batches, of like lengths, form the global
    steps, one batch per rank; the batch count is padded to a multiple of the world by repeating the
    epoch's first batches, and the global steps are shuffled."""
    rng = _epoch_rng(seed, epoch)
    items = _epoch_items(usable, rng, shuffle_window)
    pool = BUCKET_POOL * shuffle_window
    batches: list[list[Item]] = []
    for start in range(0, len(items), pool):
        chunk = sorted(items[start : start + pool], key=lambda item: int(lengths[item[0]][item[1]]))
        batch: list[Item] = []
        for item in chunk:
            seconds = int(lengths[item[0]][item[1]]) / store_rate
            full = max_clips is not None and len(batch) >= max_clips
            if batch and (full or (len(batch) + 1) * seconds > batch_seconds):  # sorted: this clip is the longest
                batches.append(batch)
                batch = []
            batch.append(item)
        if batch:
            batches.append(batch)
    padded = -len(batches) % world
    repeats = [batches[j % len(batches)] for j in range(padded)]
    steps = [(batches + repeats)[g : g + world] for g in range(0, len(batches) + padded, world)]
    order = rng.permutation(len(steps))
    return EpochPlan([steps[g][rank] for g in order], sum(len(b) for b in repeats), skipped)


class ChunkCache:
    """Decompressed chunks of `frames`, least recently used first out, within a byte budget: one per worker,
    shared by every open shard, so a window of the plan decompresses each chunk it needs once."""

    def __init__(self, budget: int) -> None:
        self.budget, self.held = budget, 0
        self._chunks: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, key: tuple, frames: Any, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the zarr array `frames` (one chunk), read on a miss."""
        if key not in self._chunks:
            chunk = frames[start:stop]
            self._chunks[key] = chunk
            self.held += chunk.nbytes
            while self.held > self.budget and len(self._chunks) > 1:
                self.held -= self._chunks.popitem(last=False)[1].nbytes
        self._chunks.move_to_end(key)
        return self._chunks[key]


class ShardTargets:
    """One shard's store groups, read for random access: offsets and clip targets held in memory, frames
    read a chunk at a time through the worker's chunk cache."""

    def __init__(self, tar: Path, experts: list[str], cache: ChunkCache | None = None) -> None:
        store = ShardStore.for_tar(tar)
        self.tar, self.keys = str(tar), store.keys
        self.groups = {e: store.expert(e) for e in experts}
        self.offsets = {e: g.offsets for e, g in self.groups.items()}
        self.clips = {e: g.clip[:] for e, g in self.groups.items()}
        self.arrays = {e: g.frames for e, g in self.groups.items()}  # the zarr arrays, opened once
        self.chunk = {e: a.chunks[0] for e, a in self.arrays.items()}
        self.cache = cache if cache is not None else ChunkCache(CHUNK_CACHE_BYTES)
        # From an object store a chunk is a round trip: an expert's frames that fit the budget come in at
        # once (Zarr fetches the chunks concurrently) and stay for as long as the shard is open.
        self._whole = {
            e: g.frames[:] for e, g in self.groups.items() if is_remote(tar) and g.frames.nbytes <= PREFETCH_BYTES
        }

    def _chunk(self, expert: str, c: int) -> np.ndarray:
        size = self.chunk[expert]
        return self.cache.get((self.tar, expert, c), self.arrays[expert], c * size, (c + 1) * size)

    def frames(self, expert: str, index: int) -> np.ndarray:
        """Sample `index`'s (T, D) frames (a read-only view where they lie in one chunk)."""
        start, stop = int(self.offsets[expert][index]), int(self.offsets[expert][index + 1])
        if expert in self._whole:
            return self._whole[expert][start:stop]
        if stop <= start:
            return np.zeros((0, self.clips[expert].shape[1]), np.float16)
        size = self.chunk[expert]
        first, last = start // size, (stop - 1) // size
        if first == last:
            return self._chunk(expert, first)[start - first * size : stop - first * size]
        return np.concatenate(
            [self._chunk(expert, c)[max(start - c * size, 0) : stop - c * size] for c in range(first, last + 1)]
        )


REMOTE_OPEN_SHARDS = 2  # per worker: a tar from an object store is held in memory while open
PREFETCH_BYTES = 64 << 20  # an expert's frames of one shard read whole from an object store up to this size
CHUNK_CACHE_BYTES = 256 << 20  # per worker: the decompressed frames a window of the plan reads


def shards_in_reach(batches: list[list[tuple[int, int, int]]], reach: int) -> int:
    """The most distinct shards any `reach` consecutive batches of a plan touch: how many shards a worker
    keeps open so that a window of the plan never reopens one (a reopen reads the tar's headers and the
    store's offsets again)."""
    most = 1
    for start in range(0, max(1, len(batches) - reach + 1)):
        most = max(most, len({(c, s) for batch in batches[start : start + reach] for c, s, _ in batch}))
    return most


class PlannedBatches(Dataset):
    """Batch j of a plan -> its CoatSamples (decoded audio + store targets). Map-style: workers and resume
    both index batches, so order never depends on worker timing.

    `sources` are the corpora (root, experts) and each batch item is (source, shard, index); a worker keeps
    as many shards open as the plan's `reach` batches touch (from an object store, REMOTE_OPEN_SHARDS)."""

    def __init__(
        self, sources: list[tuple[str, list[str]]], batches: list[list[tuple[int, int, int]]], reach: int = 64
    ) -> None:
        # Kept as text: each worker opens its own object-store client (fsspec clients do not survive a fork).
        self.sources = [(str(root), experts) for root, experts in sources]
        self.batches = batches
        self.experts = sorted({e for _, experts in self.sources for e in experts})
        remote = any(is_remote(corpus_path(root)) for root, _ in self.sources)
        self.open_shards = REMOTE_OPEN_SHARDS if remote else shards_in_reach(batches, reach)

    @classmethod
    def of_corpus(cls, corpus_root: Path | str, experts: list[str], batches: list[list[Item]]) -> PlannedBatches:
        """The batches of one corpus, items (shard, index)."""
        return cls([(str(corpus_root), experts)], [[(0, s, i) for s, i in batch] for batch in batches])

    def __len__(self) -> int:
        return len(self.batches)

    @cached_property
    def _corpora(self) -> list[CorpusInfo]:
        return [read_corpus(root) for root, _ in self.sources]  # in the worker: its own clients

    @cached_property
    def _opened(self) -> OrderedDict[tuple[int, int], tuple[TarIndex, ShardTargets | None]]:
        return OrderedDict()  # per worker process: (source, shard) -> tar index and store targets, opened on first use

    @cached_property
    def _cache(self) -> ChunkCache:
        return ChunkCache(CHUNK_CACHE_BYTES)

    def _sample(self, source: int, shard: int, index: int) -> CoatSample:
        corpus, experts = self._corpora[source], self.sources[source][1]
        tar = corpus.tar_path(corpus.shards[shard])
        if (source, shard) not in self._opened:
            targets = ShardTargets(tar, experts, self._cache) if experts else None
            self._opened[(source, shard)] = (TarIndex(tar), targets)
            if len(self._opened) > self.open_shards:
                self._opened.popitem(last=False)[1][0].close()
        self._opened.move_to_end((source, shard))
        tar_index, targets = self._opened[(source, shard)]
        raw, key = tar_index.read(index), tar_index.keys[index]
        if targets is not None and targets.keys[index] != key:
            raise UserError(f"{tar}: store key {targets.keys[index]!r} ≠ tar key {key!r} at {index}")
        # the run's other experts: no targets from this corpus, so their heads learn nothing from this clip
        frames = {e: targets.frames(e, index) if e in experts else None for e in self.experts} if targets else {}
        clips = {e: targets.clips[e][index] if e in experts else None for e in self.experts} if targets else {}
        return coat_sample(key, raw, frames, clips, str(tar))

    def __getitem__(self, j: int) -> list[CoatSample] | BatchFailure:
        # A worker that raised would leave the rank to re-raise while its workers, which ignore the stop
        # signals, block interpreter exit forever; so a failure travels back as a value instead.
        try:
            return [self._sample(source, shard, index) for source, shard, index in self.batches[j]]
        except (UserError, ValueError, AudioError, OSError) as e:  # the data's fault: one line names the clip
            return BatchFailure(str(e), bug=False)
        except Exception:  # noqa: BLE001 - a bug: its traceback goes to the rank, which raises it
            return BatchFailure(traceback.format_exc(), bug=True)


@dataclass(frozen=True)
class BatchFailure:
    """Why a batch could not be loaded, sent back from a DataLoader worker."""

    message: str
    bug: bool  # True: an unexpected exception (message is its traceback); False: bad data


def _as_list(batch: list[CoatSample] | BatchFailure) -> list[CoatSample] | BatchFailure:
    return batch


def batch_loader(dataset: PlannedBatches, start: int, num_workers: int) -> DataLoader:
    """Batches start, start + 1, … of the plan, loaded ahead by `num_workers` processes."""
    # Its own generator: each iterator draws a seed from it, and drawing from the global one would shift
    # the dropout masks of a resumed run away from those of an uninterrupted one.
    roots = [corpus_path(root) for root, _ in dataset.sources]
    context = worker_context(next((r for r in roots if is_remote(r)), roots[0]), __name__) if num_workers else None
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=range(start, len(dataset)),
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
        collate_fn=_as_list,
        worker_init_fn=ignore_stop_signals,
        prefetch_factor=2 if num_workers else None,
        persistent_workers=False,
        multiprocessing_context=context,
    )


def iterate_batches(loader: DataLoader) -> Iterator[list[CoatSample]]:
    """The loader's batches; a failed batch raises here (UserError for bad data), and the workers are
    always shut down on the way out. They ignore SIGTERM, so the interpreter's exit-time terminate-and-join
    would wait on them forever if an exception left the iterator alive in a traceback."""
    with stop_signals_blocked():  # the workers start here, and must not die of a stop signal meanwhile
        iterator = iter(loader)
    try:
        for batch in iterator:
            if isinstance(batch, BatchFailure):
                if batch.bug:
                    raise RuntimeError(f"a DataLoader worker failed:\n{batch.message}")
                raise UserError(batch.message)
            yield batch
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's own clean shutdown of the workers
        if shutdown is not None:
            shutdown()
