"""`coat-pipe bench extract`: the full extract path against a bare loop of the same experts, same process."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from stages.extract.config import ExtractConfig
from stages.extract.loader import DecodedClip, decode_sample, length_batches
from stages.extract.runner import load_experts, run_extract
from stages.lab.synth import write_synth_corpus
from store_schema.corpus import iter_tar_samples, read_corpus
from store_schema.layout import Status

ROUNDS = 2  # each path runs this often, alternating; the fastest run of each counts


def _bare_loop(config: ExtractConfig, clips: list[DecodedClip]) -> float:
    """Load the experts and run them over in-memory waves in the same length-grouped batches."""
    start = time.perf_counter()
    experts = load_experts(config)
    with torch.inference_mode():
        for expert in experts:
            for batch in length_batches(clips, config.batch_seconds):
                expert([c.waves[expert.sample_rate] for c in batch])
    if config.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_extract(
    experts: list[str],
    clips: int,
    workers: int,
    device: str,
    dtype: str,
    batch_seconds: float,
    workdir: Path | None = None,
    tiny: bool = False,
) -> dict[str, Any]:
    """Throughput in audio seconds per wall second of both paths, and full / bare. `tiny`: model
    experts are tiny random instances of their real classes (no download)."""
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="coat-bench-"))
    checkpoints = {}
    if tiny:
        from stages.extract.experts.tiny import make_tiny

        checkpoints = {e: str(make_tiny(e, root / "tiny")) for e in experts if e not in ("mel", "pitch")}
    corpus_dir = root / "bench-corpus"
    shutil.rmtree(corpus_dir, ignore_errors=True)
    write_synth_corpus(corpus_dir, clips, seed=0, shard_size=max(1, clips // 4), progress=False)
    corpus = read_corpus(corpus_dir)
    config = ExtractConfig(
        corpus=corpus_dir,
        experts=experts,
        num_workers=workers,
        device=device,
        dtype=dtype,
        batch_seconds=batch_seconds,
        overwrite=True,
        progress=False,
        checkpoints=checkpoints,
    )

    rates = sorted({e.sample_rate for e in load_experts(config)})
    decoded = [
        decode_sample(s, i, sample, rates)
        for s, shard in enumerate(corpus.shards)
        for i, sample in enumerate(iter_tar_samples(corpus.tar_path(shard)))
    ]
    decoded = [c for c in decoded if c.status == Status.OK]
    audio_seconds = sum(c.seconds for c in decoded)

    bare, full = [], []
    for _ in range(ROUNDS):
        bare.append(_bare_loop(config, decoded))
        start = time.perf_counter()
        run_extract(config)
        full.append(time.perf_counter() - start)
    if workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    bare_s, full_s = min(bare), min(full)
    return {
        "audio_seconds": audio_seconds,
        "bare_seconds": bare_s,
        "full_seconds": full_s,
        "bare_speed": audio_seconds / bare_s,
        "full_speed": audio_seconds / full_s,
        "ratio": bare_s / full_s,
    }
