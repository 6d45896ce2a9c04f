"""The epoch plan and the planned batches: balanced ranks, every clip once, exact resume."""

from collections import Counter

import numpy as np
import pytest
import zarr

from stages.train.data import PlannedBatches, batch_loader, plan_epoch, preflight, usable_items
from store_schema.corpus import read_corpus, read_tar_keys
from store_schema.errors import UserError
from tests.helpers import copy_corpus


def _plans(usable, world, batch, epoch=0):
    return [plan_epoch(usable, Counter(), epoch, 7, rank, world, batch) for rank in range(world)]


def test_ranks_get_the_same_number_of_batches_and_every_clip_once_per_epoch():
    usable = [list(range(n)) for n in (6, 6, 6, 6, 5)]  # 5 shards, 29 clips, over 2 ranks
    plans = _plans(usable, world=2, batch=4)
    assert len(plans[0].batches) == len(plans[1].batches) == 4
    seen = Counter(item for p in plans for b in p.batches for item in b)
    everything = {(s, i) for s, idx in enumerate(usable) for i in idx}
    assert set(seen) == everything
    assert sum(seen.values()) - len(everything) == plans[0].padded == 3  # 32 slots for 29 clips
    assert all(len(b) == 4 for p in plans for b in p.batches)


def test_plan_is_deterministic_and_reshuffled_each_epoch():
    usable = [list(range(10)) for _ in range(4)]
    assert _plans(usable, 2, 3)[0].batches == _plans(usable, 2, 3)[0].batches
    assert _plans(usable, 2, 3, epoch=0)[0].batches != _plans(usable, 2, 3, epoch=1)[0].batches


def test_bad_status_clips_are_skipped_and_counted(extracted_corpus, tmp_path):
    corpus_dir = copy_corpus(extracted_corpus, tmp_path / "c")
    status = zarr.open_array(corpus_dir / "train-000001.zarr" / "pitch" / "status", mode="r+")
    values = status[:]
    values[2] = 5  # silent
    status[:] = values
    usable, skipped = usable_items(read_corpus(corpus_dir), ["mel", "pitch"])
    assert 2 not in usable[1] and len(usable[1]) == 5 and skipped == Counter({"silent": 1})


def test_planned_batches_load_the_planned_clips_with_workers_and_from_any_start(extracted_corpus):
    corpus = read_corpus(extracted_corpus)
    usable, _ = usable_items(corpus, ["mel", "pitch"])
    plan = plan_epoch(usable, Counter(), 0, 0, 0, 1, 4)
    keys = [read_tar_keys(corpus.tar_path(s)) for s in corpus.shards]
    dataset = PlannedBatches.of_corpus(extracted_corpus, ["mel", "pitch"], plan.batches)
    loaded = [[s.key for s in b] for b in batch_loader(dataset, 0, num_workers=2)]
    assert loaded == [[keys[s][i] for s, i in b] for b in plan.batches]
    assert [[s.key for s in b] for b in batch_loader(dataset, 2, num_workers=0)] == loaded[2:]
    first = dataset[0][0]
    assert first.frames["mel"].shape[1] == 128 and first.clip["pitch"].shape == (2,) and first.wave.dtype == np.float32


def test_preflight_names_what_is_missing(extracted_corpus):
    with pytest.raises(UserError, match="no 'beats' group.*coat-pipe extract"):
        preflight(read_corpus(extracted_corpus), ["mel", "beats"])


def test_chunk_cached_frames_equal_the_stored_frames(extracted_corpus):
    from stages.train.data import ChunkCache, ShardTargets
    from store_schema.reader import ShardStore

    tar = read_corpus(extracted_corpus).tar_path(read_corpus(extracted_corpus).shards[0])
    targets = ShardTargets(tar, ["mel"], ChunkCache(1))  # one chunk at a time: every read evicts the last
    targets.chunk["mel"] = 7  # tiny chunks in the cache's arithmetic: every clip crosses chunk borders
    group = ShardStore.for_tar(tar).expert("mel")
    group_chunked = group.frames[:]
    targets.arrays["mel"] = group_chunked
    for i in reversed(range(len(targets.keys))):
        np.testing.assert_array_equal(targets.frames("mel", i), group.frames_of(i))


def test_grouping_by_length_keeps_coverage_and_makes_each_step_alike():
    rng = np.random.default_rng(1)
    usable = [list(range(40)) for _ in range(3)]
    lengths = [rng.integers(10, 100, 40) for _ in range(3)]
    plans = [plan_epoch(usable, Counter(), 0, 3, r, 2, 4, shuffle_window=40, lengths=lengths) for r in (0, 1)]
    plain = [plan_epoch(usable, Counter(), 0, 3, r, 2, 4, shuffle_window=40) for r in (0, 1)]

    def covered(ps):
        return Counter(item for p in ps for b in p.batches for item in b)

    assert covered(plans) == covered(plain)  # the same clips, the same number of times
    assert len(plans[0].batches) == len(plans[1].batches)

    def spread(ps):  # mean (longest - shortest) over each global step's clips, both ranks together
        return np.mean(
            [np.ptp([lengths[s][i] for p in ps for s, i in p.batches[j]]) for j in range(len(ps[0].batches))]
        )

    assert spread(plans) < 0.5 * spread(plain)
