"""The training stream of one corpus or of a weighted mixture: which clips each rank takes at each micro-step.

The stream is a pure function of the seed and the micro-step m, so every rank computes it without talking
to the others and a resumed run recomputes exactly where it was:

- Each corpus has its own stream of global steps: its epochs one after another (`plan_epoch`, or
  `plan_epoch_by_duration` with `batch_seconds`), each epoch shuffled by (seed, corpus, epoch). A
  global step holds one batch per rank.
- A mixture draws the corpus of each micro-step with probability proportional to its weight, from
  generators seeded by (seed, block of 4096 steps); a corpus's k-th draw takes its k-th global step, so
  smaller corpora cycle through more epochs, each at its own count. A corpus of one never draws.

With one corpus and a fixed batch size the stream is exactly the epoch plans of before mixtures (the first
corpus keeps the seed (seed, epoch)), so single-corpus runs train the same batches.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from stages.train.data import Item, plan_epoch, plan_epoch_by_duration
from stages.train.targets import TargetSpec
from store_schema.corpus import CorpusInfo, read_corpus
from store_schema.errors import UserError
from store_schema.layout import DEFAULT_STORE_RATE

DRAW_BLOCK = 4096  # micro-steps whose corpus draws come from one generator


@dataclass
class Source:
    """One corpus of the mixture as the stream sees it."""

    name: str
    corpus: CorpusInfo
    weight: float
    experts: list[str]  # the experts whose targets this corpus holds (a subset of the run's heads)
    usable: list[list[int]]  # per shard, the clips whose status is ok in every one of its experts
    skipped: Counter
    lengths: list[np.ndarray] | None  # per shard, each clip's length in store frames (batches by length)
    store_rate: float = 12.5

    @property
    def clips(self) -> int:
        return sum(len(u) for u in self.usable)


@dataclass(frozen=True)
class StreamBatch:
    """What one rank trains on at one micro-step."""

    step: int  # micro-step m
    source: int  # index of the corpus
    epoch: int  # that corpus's epoch
    items: list[Item]  # (shard, index) of the clips, in that corpus


@dataclass
class TrainingStream:
    sources: list[Source]
    seed: int
    rank: int
    world: int
    batch_size: int
    shuffle_window: int = 256
    batch_seconds: float | None = None
    _cumulative: dict[int, list[int]] = field(default_factory=dict)  # per source: global steps before epoch e
    _plans: dict[tuple[int, int], list[list[Item]]] = field(default_factory=dict)  # a few epochs' plans

    def epoch_plan(self, source: int, epoch: int) -> list[list[Item]]:
        """This rank's batches of one epoch of one corpus (one per global step)."""
        return _epoch_plan(self, source, epoch)

    def _epoch_of(self, source: int, k: int) -> tuple[int, int]:
        """(epoch, global step within it) of a corpus's k-th global step."""
        starts = self._cumulative.setdefault(source, [0])
        while starts[-1] <= k:
            starts.append(starts[-1] + len(self.epoch_plan(source, len(starts) - 1)))
        epoch = int(np.searchsorted(starts, k, side="right")) - 1
        return epoch, k - starts[epoch]

    def draws(self, start: int, stop: int) -> np.ndarray:
        """The corpus of each micro-step in [start, stop)."""
        if len(self.sources) == 1:
            return np.zeros(stop - start, dtype=np.int64)
        weights = np.array([s.weight for s in self.sources], dtype=float)
        out = []
        for block in range(start // DRAW_BLOCK, (stop - 1) // DRAW_BLOCK + 1):
            rng = np.random.default_rng([self.seed, 0x6D697820, block])  # "mix ", then the block
            drawn = rng.choice(len(self.sources), size=DRAW_BLOCK, p=weights / weights.sum())
            lo, hi = max(start, block * DRAW_BLOCK), min(stop, (block + 1) * DRAW_BLOCK)
            out.append(drawn[lo - block * DRAW_BLOCK : hi - block * DRAW_BLOCK])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def batches(self, start: int, stop: int) -> list[StreamBatch]:
        """This rank's batches for micro-steps [start, stop)."""
        drawn = self.draws(0, stop)
        taken = np.zeros(len(self.sources), dtype=np.int64)
        for c in drawn[:start]:
            taken[c] += 1
        out = []
        for m in range(start, stop):
            c = int(drawn[m])
            epoch, j = self._epoch_of(c, int(taken[c]))
            out.append(StreamBatch(m, c, epoch, self.epoch_plan(c, epoch)[j]))
            taken[c] += 1
        return out

    def segment_end(self, start: int) -> int:
        """Where the loader's segment starting at `start` ends: the end of the corpus epoch it is in for a
        single corpus (a loader per epoch, as before mixtures), else 1024 micro-steps on."""
        if len(self.sources) > 1:
            return start + 1024
        epoch, j = self._epoch_of(0, start)
        return start - j + len(self.epoch_plan(0, epoch))


def _epoch_plan(stream: TrainingStream, source: int, epoch: int) -> list[list[Item]]:
    cache, key = stream._plans, (source, epoch)
    if key not in cache:
        src = stream.sources[source]
        seed = stream.seed if source == 0 else [stream.seed, source]  # the first corpus keeps today's seeds
        if stream.batch_seconds is None:
            plan = plan_epoch(
                src.usable, src.skipped, epoch, seed, stream.rank, stream.world, stream.batch_size,
                stream.shuffle_window, src.lengths,
            )  # fmt: skip
        else:
            assert src.lengths is not None, "duration budgets need the clips' lengths"
            plan = plan_epoch_by_duration(
                src.usable, src.skipped, epoch, seed, stream.rank, stream.world, stream.batch_seconds,
                src.lengths, src.store_rate, stream.batch_size, stream.shuffle_window,
            )  # fmt: skip
        if len(cache) > 8:
            cache.pop(next(iter(cache)))
        cache[key] = plan.batches
    return cache[key]


def load_sources(
    cfg_corpora: list, default_experts: list[str], need_experts: bool, held_only: bool = False
) -> tuple[list[Source], dict[str, TargetSpec], list[str]]:
    """Each corpus read and checked (`preflight`), its usable clips and lengths; the run's experts (the union
    of the corpora's) and their specs, standardised with stats pooled exactly over the corpora that hold
    them. `held_only` (validation sets): of `default_experts`, those the corpus's store holds. Raises
    UserError before anything trains: a store not ready, one expert made two ways."""
    from stages.train.data import clip_lengths, preflight, store_rate, usable_items
    from store_schema.reader import store_experts
    from store_schema.stats import pool_stats, read_stats

    sources, records = [], {}
    for entry in cfg_corpora:
        corpus = read_corpus(entry.path)
        experts = entry.experts if entry.experts is not None else (default_experts or store_experts(corpus))
        if held_only and entry.experts is None:
            experts = [e for e in experts if e in store_experts(corpus)]
        if not experts and need_experts:
            raise UserError(
                f"{entry.path}: no experts in the store; run `coat-pipe extract --corpus {entry.path}` first"
            )
        if experts:
            preflight(corpus, experts)
        usable, skipped = usable_items(corpus, experts)
        lengths = clip_lengths(corpus, experts[0]) if experts else None
        rate = store_rate(corpus, experts[0]) if experts else DEFAULT_STORE_RATE
        sources.append(Source(entry.label, corpus, entry.weight, list(experts), usable, skipped, lengths, rate))
        for expert in experts:
            records.setdefault(expert, []).append((entry.path, read_stats(corpus.root, expert)))
    specs = {}
    for expert, held in records.items():
        if len(held) == 1:  # one corpus: its own record, as a run of one corpus always had
            specs[expert] = TargetSpec.from_stats(held[0][1])
            continue
        try:
            specs[expert] = TargetSpec.from_stats(pool_stats([stats for _, stats in held]))
        except ValueError as e:
            raise UserError(f"{', '.join(path for path, _ in held)}: {e}") from None
    return sources, specs, list(records) if records else list(default_experts)
