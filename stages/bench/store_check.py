"""`coat-pipe bench check`: the full store check against the structural one, same corpus, same process."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from stages.extract.config import ExtractConfig
from stages.extract.runner import run_extract
from stages.lab.synth import write_synth_corpus
from store_schema.check import check_store
from store_schema.corpus import read_corpus

ROUNDS = 3  # each mode runs this often, alternating; the fastest run of each counts (a warm page cache)


def bench_check(corpus_dir: Path | None, clips: int, experts: list[str]) -> dict[str, Any]:
    """Seconds of `store check --quick` and of the full check, per audio hour, and full / quick.

    Without `corpus_dir`, a synthetic corpus of `clips` clips is made and `experts` extracted into it."""
    workdir = None
    if corpus_dir is None:
        workdir = Path(tempfile.mkdtemp(prefix="coat-bench-check-"))
        corpus_dir = workdir / "corpus"
        write_synth_corpus(corpus_dir, clips, seed=0, shard_size=max(1, clips // 4), progress=False)
        run_extract(ExtractConfig(corpus=corpus_dir, experts=experts, num_workers=0, progress=False))
    corpus = read_corpus(corpus_dir)
    timings: dict[str, list[float]] = {"quick": [], "full": []}
    findings = 0
    for _ in range(ROUNDS):
        for mode in ("quick", "full"):
            start = time.perf_counter()
            findings += len(check_store(corpus, full=mode == "full"))
            timings[mode].append(time.perf_counter() - start)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
    hours = corpus.seconds / 3600
    quick, full = min(timings["quick"]), min(timings["full"])
    return {
        "clips": corpus.samples,
        "audio_hours": hours,
        "findings": findings,
        "quick_seconds": quick,
        "full_seconds": full,
        "quick_s_per_audio_hour": quick / hours,
        "full_s_per_audio_hour": full / hours,
        "ratio": full / quick,
    }
