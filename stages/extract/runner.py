"""Stage one: decode each clip once, run every named expert on length-grouped batches, pool, write the store.

    coat-pipe extract --corpus data/train --expert mel,pitch
    coat-pipe extract --corpus data/train --expert mel --shard-index 3 --num-shards 8   # one slice

Resume is by construction: a shard's expert group appears under its final name only when complete,
so a re-run skips every complete group whose fingerprint matches and redoes the rest. Shards are
locked (flock) while a process works on them, so concurrent runs never write the same shard.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from stages.config_files import config_dict
from stages.extract.config import ExtractConfig, worker_slice
from stages.extract.experts import Expert, load_expert
from stages.extract.loader import DecodedClip, clip_loader, length_batches
from stages.extract.pooling import pool_clip, pool_to_store_rate
from stages.progress import audio_progress
from store_schema.corpus import CorpusInfo, ShardInfo, read_corpus, read_tar_keys
from store_schema.errors import UserError
from store_schema.layout import SCHEMA_VERSION, ExpertSpec, Status, shard_store_path
from store_schema.reader import ShardStore, group_fingerprint
from store_schema.stats import finalize_stats
from store_schema.writer import ExpertGroupWriter, ensure_shard_store, refuse_links_out, remove_temp_groups, shard_lock

WINDOW_BATCHES = 4  # clips gathered before sorting by length: a few batches' worth


@dataclass
class BadClip:
    shard: str
    key: str
    expert: str  # "audio" when decoding failed, so no expert saw it
    reason: str
    message: str


@dataclass
class ExtractSummary:
    shards_done: list[str] = field(default_factory=list)
    shards_skipped: list[str] = field(default_factory=list)  # complete with a matching fingerprint
    clips: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    status: dict[str, Counter] = field(default_factory=dict)  # expert -> status name -> clips
    expert_seconds: Counter = field(default_factory=Counter)  # expert -> seconds inside its calls
    bad: list[BadClip] = field(default_factory=list)
    stats_written: list[str] = field(default_factory=list)
    log_file: Path | None = None


def load_experts(config: ExtractConfig) -> list[Expert]:
    unknown = set(config.expert_options) - set(config.experts)
    if unknown:
        raise UserError(f"options given for experts this run does not use: {', '.join(sorted(unknown))}")
    unknown = set(config.checkpoints) - set(config.experts)
    if unknown:
        raise UserError(f"weights given for experts this run does not use: {', '.join(sorted(unknown))}")
    experts = []
    for name in config.experts:
        options = dict(config.expert_options.get(name, {}))
        if config.trust_remote_code:
            options["trust_remote_code"] = True
        experts.append(load_expert(name, config.checkpoints.get(name), config.device, config.dtype, **options))
    return experts


def _stale_groups(corpus: CorpusInfo, shard: ShardInfo, specs: list[ExpertSpec], config: ExtractConfig) -> list[str]:
    """The shard's complete groups made with other options (refused unless --overwrite); raises UserError for a
    store of another schema or rate."""
    store = shard_store_path(corpus.tar_path(shard))
    if not store.is_dir():
        return []
    attrs = ShardStore(store).attrs
    if attrs.get("schema_version") != SCHEMA_VERSION or attrs.get("store_rate") != config.store_rate:
        raise UserError(
            f"{store}: schema {attrs.get('schema_version')} at {attrs.get('store_rate')} Hz, this run writes "
            f"schema {SCHEMA_VERSION} at {config.store_rate} Hz; move the old store aside first"
        )
    stale = []
    for spec in specs:
        found = group_fingerprint(store, spec.expert)
        if found is not None and found != spec.fingerprint and not config.overwrite:
            stale.append(f"{shard.name}: {spec.expert} ({found} ≠ {spec.fingerprint})")
    return stale


def _refuse_stale(corpus: CorpusInfo, shards: list[ShardInfo], specs: list[ExpertSpec], config: ExtractConfig) -> None:
    """A store of another schema or rate, or a group made with other options, stops the run: before any work,
    and again for each shard once its lock is held (another extractor may have written it in between)."""
    stale = [line for shard in shards for line in _stale_groups(corpus, shard, specs, config)]
    if stale:
        listing = "\n  ".join(stale[:10]) + (f"\n  … and {len(stale) - 10} more" if len(stale) > 10 else "")
        raise UserError(
            "these complete groups were made with other expert options (fingerprint differs):\n  "
            f"{listing}\nRe-run with --overwrite to redo them with the current options, or restore the old options."
        )


class _ShardJob:
    """One locked shard in progress: its keys and one writer per expert."""

    def __init__(
        self, corpus: CorpusInfo, shard: ShardInfo, keys: list[str], specs: list[ExpertSpec], config: ExtractConfig
    ) -> None:
        self.shard = shard
        tar = corpus.tar_path(shard)
        self.keys = keys
        store = ensure_shard_store(tar, self.keys, config.store_rate)
        remove_temp_groups(store)
        run_config = config_dict(config)
        self.writers = {s.expert: ExpertGroupWriter(store, s, len(self.keys), run_config) for s in specs}

    @property
    def done(self) -> bool:
        return all(w.done for w in self.writers.values())


def _targets(expert: Expert, spec: ExpertSpec, frames: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    if frames.ndim != 2 or frames.shape[1] != expert.dim or len(frames) == 0:
        raise ValueError(f"expected (T > 0, {expert.dim}) frames, got {frames.shape}")
    if not np.isfinite(frames).all():
        raise ValueError("the expert returned NaN or Inf")
    pooled = pool_to_store_rate(frames, expert.frame_times(len(frames)), seconds, spec.store_rate, spec.kind)
    return pooled, pool_clip(frames, spec.kind)


def _run_expert(
    expert: Expert,
    spec: ExpertSpec,
    clips: list[DecodedClip],
    jobs: list[_ShardJob],
    config: ExtractConfig,
    summary: ExtractSummary,
) -> None:
    """Run one expert over clips in length-grouped batches; a failing batch is retried clip by clip."""
    for batch in length_batches(clips, config.batch_seconds):
        waves = [c.waves[expert.sample_rate] for c in batch]
        start = time.perf_counter()
        try:
            outputs: list[np.ndarray | Exception] = list(expert(waves))
        except Exception:  # noqa: BLE001 - retried one by one, so a bad clip costs only itself
            outputs = []
            for wave in waves:
                try:
                    outputs.append(expert([wave])[0])
                except Exception as e:  # noqa: BLE001 - recorded per clip in the store and the summary
                    outputs.append(e)
        summary.expert_seconds[expert.name] += time.perf_counter() - start
        for clip, out in zip(batch, outputs, strict=False):
            writer = jobs[clip.shard].writers[expert.name]
            try:
                if isinstance(out, Exception):
                    raise out
                pooled, whole = _targets(expert, spec, out, clip.seconds)
            except Exception as e:  # noqa: BLE001
                writer.put(clip.index, Status.EXPERT_FAILED)
                _record_bad(
                    summary, jobs, clip, expert.name, Status.EXPERT_FAILED, f"{clip.key}: {type(e).__name__}: {e}"
                )
                continue
            writer.put(clip.index, Status.OK, pooled, whole)
            summary.status[expert.name]["ok"] += 1


def _record_bad(
    summary: ExtractSummary, jobs: list[_ShardJob], clip: DecodedClip, expert: str, status: Status, message: str
) -> None:
    summary.status[expert][status.name.lower()] += 1
    summary.bad.append(BadClip(jobs[clip.shard].shard.name, clip.key, expert, status.reason, message))


def _process(
    corpus: CorpusInfo,
    jobs: list[_ShardJob],
    experts: list[Expert],
    specs: dict[str, ExpertSpec],
    config: ExtractConfig,
    summary: ExtractSummary,
) -> None:
    """Stream the jobs' clips through the experts and commit each shard's groups as soon as it is whole."""
    tars = [corpus.tar_path(j.shard) for j in jobs]
    loader = clip_loader(tars, [e.sample_rate for e in experts], config.num_workers)
    total = sum(len(j.keys) for j in jobs)
    window: list[DecodedClip] = []
    committed: set[int] = set()

    def run_window() -> None:
        for expert in experts:
            eligible = []
            minimum = max(1.0 / config.store_rate, expert.min_seconds)
            for clip in window:
                if clip.seconds < minimum:
                    jobs[clip.shard].writers[expert.name].put(clip.index, Status.TOO_SHORT)
                    _record_bad(
                        summary,
                        jobs,
                        clip,
                        expert.name,
                        Status.TOO_SHORT,
                        f"{clip.key}: {clip.seconds:.3f} s is shorter than {minimum:.3f} s",
                    )
                else:
                    eligible.append(clip)
            _run_expert(expert, specs[expert.name], eligible, jobs, config, summary)
        window.clear()

    def commit_finished() -> None:
        for position, job in enumerate(jobs):
            if position not in committed and job.done:
                for writer in job.writers.values():
                    writer.commit()
                committed.add(position)
                summary.shards_done.append(job.shard.name)

    with audio_progress(disable=not config.progress) as progress:
        task = progress.add_task(f"extract {','.join(config.experts)}", total=total, audio_s=0.0)
        window_seconds = 0.0
        with torch.inference_mode():
            for clip in loader:
                summary.clips += 1
                summary.audio_seconds += clip.seconds
                if clip.status != Status.OK:
                    for expert in experts:
                        jobs[clip.shard].writers[expert.name].put(clip.index, clip.status)
                        summary.status[expert.name][clip.status.name.lower()] += 1
                    summary.bad.append(
                        BadClip(jobs[clip.shard].shard.name, clip.key, "audio", clip.status.reason, clip.message)
                    )
                else:
                    window.append(clip)
                    window_seconds += clip.seconds
                if window_seconds >= WINDOW_BATCHES * config.batch_seconds:
                    run_window()
                    window_seconds = 0.0
                    commit_finished()
                progress.update(task, advance=1, audio_s=summary.audio_seconds)
            run_window()
            commit_finished()
    unfinished = [str(corpus.tar_path(j.shard)) for p, j in enumerate(jobs) if p not in committed]
    if unfinished:
        raise UserError(f"{', '.join(unfinished)}: webdataset read fewer samples than the tar headers list")


def run_extract(config: ExtractConfig) -> ExtractSummary:
    """Extract every named expert for this process's slice of the corpus; returns what happened.

    A file-system error (a read-only corpus, a full disk) ends the run with one line naming the path;
    what was committed before it stays, and the same command resumes."""
    corpus = read_corpus(config.corpus)
    refuse_links_out(corpus)
    try:
        return _run_extract(config, corpus)
    except OSError as e:
        where = e.filename or corpus.root
        raise UserError(
            f"{where}: {e.strerror or e}; extract writes the store beside the tars, so the corpus "
            "folder must be writable with room to spare"
        ) from None


def tar_keys(corpus: CorpusInfo, shards: list[ShardInfo]) -> dict[str, list[str]]:
    """Each shard's keys from its tar headers; a damaged tar or a count that disagrees with corpus.json stops
    the run before anything is written."""
    keys = {}
    for shard in shards:
        keys[shard.name] = read_tar_keys(corpus.tar_path(shard))
        if len(keys[shard.name]) != shard.samples:
            raise UserError(
                f"{corpus.tar_path(shard)}: holds {len(keys[shard.name])} samples, corpus.json lists {shard.samples}"
            )
    return keys


def _run_extract(config: ExtractConfig, corpus: CorpusInfo) -> ExtractSummary:
    started = time.perf_counter()
    experts = load_experts(config)
    specs = {e.name: e.spec(config.store_rate) for e in experts}
    index, count = worker_slice(config)
    mine = list(corpus.shards[index::count])
    keys = tar_keys(corpus, mine)  # every tar of the slice read to its end before any work
    _refuse_stale(corpus, mine, list(specs.values()), config)
    summary = ExtractSummary(status={name: Counter() for name in specs})

    # First pass takes every free shard; shards another process holds are waited for afterwards,
    # one at a time, and redone only if that process died before completing them.
    waiting, blocking = mine, False
    while waiting:
        still_waiting = []
        with ExitStack() as locks:
            jobs = []
            for shard in waiting if not blocking else waiting[:1]:
                if not locks.enter_context(shard_lock(corpus.root, shard.name, blocking=blocking)):
                    still_waiting.append(shard)
                    continue
                # what the lock guards is checked again now that it is held: another extractor with other
                # options may have completed this shard since the check at the start
                _refuse_stale(corpus, [shard], list(specs.values()), config)
                store = shard_store_path(corpus.tar_path(shard))
                current = all(group_fingerprint(store, s.expert) == s.fingerprint for s in specs.values())
                if current and not (config.overwrite and shard.name not in summary.shards_done):
                    summary.shards_skipped.append(shard.name)
                    continue
                jobs.append(_ShardJob(corpus, shard, keys[shard.name], list(specs.values()), config))
            if jobs:
                _process(corpus, jobs, experts, specs, config, summary)
        still_waiting += waiting[1:] if blocking else []
        waiting, blocking = still_waiting, True

    summary.stats_written = [s.expert for s in specs.values() if finalize_stats(corpus, s)]
    summary.wall_seconds = time.perf_counter() - started
    if summary.bad:
        summary.log_file = _write_bad_log(corpus.root, summary.bad, index)
    return summary


def _write_bad_log(root: Path, bad: list[BadClip], index: int) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = root / "logs" / f"extract-{stamp}-{index}.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(b.__dict__) + "\n" for b in bad))
    return path
