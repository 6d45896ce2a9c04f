"""`coat-pipe bench train`: CoAT vs --no-think step time, and tar + store vs tar-only stream throughput.

Both comparisons run in one process, on the same backbone, batch and clips.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from stages.extract.config import ExtractConfig
from stages.extract.runner import run_extract
from stages.lab.synth import write_synth_corpus
from stages.train.config import ModelConfig
from stages.train.data import PlannedBatches, batch_loader, plan_epoch, preflight, usable_items
from stages.train.model import CoatModel
from store_schema.corpus import read_corpus
from store_schema.reader import store_experts

ROUNDS = 2  # each variant runs its timed steps this often, alternating; the fastest round counts
STREAM_ROUNDS = 4  # the two streams alternate this often (a 2-core machine's noise is several per cent)
STREAM_PASSES = 4  # each stream reads the epoch's batches this often per round


def _step_seconds(model: CoatModel, batch: Any, steps: int) -> float:
    """Median seconds of forward + backward + AdamW step, after two warm-up steps."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        model(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _stream_rate(corpus_dir: Path, experts: list[str], plan: Any, workers: int) -> float:
    """Steady-state clips/s: each shard is opened before the clock starts (tar index, store arrays), since
    that one-time cost (milliseconds a shard) is spread over 1000-clip shards in real corpora."""
    dataset = PlannedBatches.of_corpus(corpus_dir, experts, plan.batches * STREAM_PASSES)
    if workers == 0:
        for shard in sorted({s for batch in plan.batches for s, _ in batch}):
            dataset._sample(0, shard, next(i for b in plan.batches for s, i in b if s == shard))
    start, clips = time.perf_counter(), 0
    for batch in batch_loader(dataset, 0, workers):
        clips += len(batch)
    return clips / (time.perf_counter() - start)


def bench_train(
    backbone: str, corpus_dir: Path | None, steps: int, batch_size: int, think_tokens: int, workers: int
) -> dict[str, Any]:
    if corpus_dir is None:  # a small synthetic corpus with mel and pitch
        corpus_dir = Path(tempfile.mkdtemp(prefix="coat-bench-train-")) / "corpus"
        write_synth_corpus(corpus_dir, 96, seed=0, shard_size=32, progress=False)
        run_extract(ExtractConfig(corpus=corpus_dir, experts=["mel", "pitch"], progress=False, num_workers=0))
    corpus = read_corpus(corpus_dir)
    experts = store_experts(corpus)
    specs = preflight(corpus, experts)
    usable, skipped = usable_items(corpus, experts)
    plan = plan_epoch(usable, skipped, 0, 0, 0, 1, batch_size)
    samples = PlannedBatches.of_corpus(corpus_dir, experts, plan.batches)[0]

    torch.manual_seed(0)
    coat = CoatModel.build(ModelConfig(backbone=backbone, think_tokens=think_tokens), specs)
    torch.manual_seed(0)
    base = CoatModel.build(ModelConfig(backbone=backbone, think_tokens=think_tokens, no_think=True), specs)
    coat_batch, base_batch = coat.batch(samples), base.batch(samples)
    coat_s, base_s = [], []
    for _ in range(ROUNDS):
        coat_s.append(_step_seconds(coat, coat_batch, steps))
        base_s.append(_step_seconds(base, base_batch, steps))

    with_store, tar_only = [], []
    for _ in range(STREAM_ROUNDS):
        with_store.append(_stream_rate(corpus_dir, experts, plan, workers))
        tar_only.append(_stream_rate(corpus_dir, [], plan, workers))
    return {
        "backbone": backbone,
        "experts": experts,
        "think_tokens": think_tokens,
        "batch_size": batch_size,
        "coat_step_s": min(coat_s),
        "base_step_s": min(base_s),
        "step_ratio": min(coat_s) / min(base_s),
        "stream_store_clips_s": max(with_store),
        "stream_tar_clips_s": max(tar_only),
        "stream_ratio": max(with_store) / max(tar_only),
        "clips": sum(len(b) for b in plan.batches),
        "skipped": dict(skipped),
    }
