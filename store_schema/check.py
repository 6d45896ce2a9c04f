"""Validating a store against its corpus (`store check`), and summarising it (`store info`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from store_schema.corpus import CorpusInfo, iter_tar_samples, read_tar_keys, sample_meta
from store_schema.errors import UserError
from store_schema.layout import (
    CLIP,
    FRAMES,
    MAX_STORE_RATE,
    MIN_STORE_RATE,
    OFFSETS,
    SCHEMA_VERSION,
    STATUS,
    ExpertSpec,
    Status,
    shard_store_path,
    stats_path,
)
from store_schema.reader import ExpertGroup, ShardStore, store_experts
from store_schema.stats import compute_stats, read_stats

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    shard: str  # tar name, or "stats" for corpus-wide files
    what: str
    fix: str


def _extract_cmd(corpus: CorpusInfo, expert: str, extra: str = "", reference: ExpertGroup | None = None) -> str:
    """The extract command that completes `expert`, with the options of a reference group if there is one."""
    config = (reference.attrs.get("extract_config") or {}) if reference is not None else {}
    options = (config.get("expert_options") or {}).get(expert, {})
    flags = "".join(f" --set {expert}.{k}={v}" for k, v in sorted(options.items()))
    return f"coat-pipe extract --corpus {corpus.root} --expert {expert}{flags}{extra}"


def _group_problems(group: ExpertGroup, num_samples: int) -> list[str]:
    """Internal consistency of one group from its small arrays and attributes: what a crash or an edit breaks."""
    found = []
    attrs = group.attrs
    try:
        recomputed = ExpertSpec.from_attrs(attrs).fingerprint
    except (TypeError, ValueError) as e:
        return [f"has attributes that do not describe an expert ({e})"]
    if recomputed != group.fingerprint:
        found.append(f"has fingerprint {group.fingerprint} but its stored options give {recomputed} (edited?)")
    if attrs.get("schema_version") != SCHEMA_VERSION:
        found.append(f"was written with schema version {attrs.get('schema_version')}, expected {SCHEMA_VERSION}")
    offsets, status = group.offsets, group.status
    if len(offsets) != num_samples + 1 or len(status) != num_samples:
        found.append(f"has {len(status)} statuses and {len(offsets)} offsets for {num_samples} keys")
    elif offsets[0] != 0 or offsets[-1] != group.frames.shape[0] or (np.diff(offsets) < 0).any():
        found.append(f"offsets end at {offsets[-1]} but frames has {group.frames.shape[0]} rows")
    elif ((status == 0) & (np.diff(offsets) == 0)).any():
        found.append("has ok samples with no frames")
    elif not np.isin(status, [s.value for s in Status]).all():
        found.append("has status codes that mean nothing")
    for name, count in (attrs.get("chunks_written") or {}).items():
        present = group.array(name).nchunks_initialized
        if present != count:
            found.append(f"{name} has {present} of its {count} chunk files")
    return found


def _group_values_problems(group: ExpertGroup, rows_per_read: int = 65536) -> list[str]:
    """What only reading every value shows: unreadable chunks, NaN/Inf, values changed since the write."""
    found = []
    digests = group.attrs.get("content_sha256") or {}
    try:
        for name in (FRAMES, CLIP, OFFSETS, STATUS):
            array = group.array(name)
            digest = hashlib.sha256()
            for start in range(0, max(array.shape[0], 1), rows_per_read):
                block = array[start : start + rows_per_read]
                digest.update(np.ascontiguousarray(block).tobytes())
                if name in (FRAMES, CLIP) and not np.isfinite(block.astype(np.float32)).all():
                    found.append(f"{name} holds NaN or Inf")
                    break
            if name in digests and digest.hexdigest() != digests[name]:
                found.append(f"{name} differs from what was written (a chunk changed, truncated or missing)")
    except Exception as e:  # noqa: BLE001 - a damaged chunk raises whatever its codec raises
        found.append(f"has a chunk that cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
    return found


def _tar_samples_problems(tar: Path, keys: list[str], limit: int = 5) -> list[str]:
    """Every sample of the tar as training reads it: a usable conversation in its json, keys as indexed."""
    found, seen = [], []
    try:
        for sample in iter_tar_samples(tar):
            seen.append(sample["__key__"])
            if len(found) < limit:
                try:
                    sample_meta(sample, f"sample {sample['__key__']!r}")
                except ValueError as e:
                    found.append(str(e))
    except Exception as e:  # noqa: BLE001 - webdataset raises ValueError, tarfile its own errors
        return [f"the tar cannot be read to the end ({type(e).__name__}: {e})"]
    if seen != keys:
        found.append(f"webdataset reads {len(seen)} samples where the headers index {len(keys)} (keys differ)")
    return found


def _open(what: Callable[[], T]) -> tuple[T | None, str | None]:
    """Open a piece of the store; a damaged one (garbage metadata, a deleted array) gives a reason, not a crash."""
    try:
        return what(), None
    except Exception as e:  # noqa: BLE001 - zarr raises many kinds on damaged metadata
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def check_store(
    corpus: CorpusInfo,
    experts: list[str] | None = None,
    expected: dict[str, str] | None = None,
    full: bool = False,
) -> list[Problem]:
    """Every reason the store cannot be trusted for training: one Problem per finding.

    Structural (the default, fast): the tar headers to their end, sample counts against corpus.json, the
    stores' keys, every group's small arrays and attributes (fingerprint recomputed from its options,
    chunk files present), the stats files' values. `full` also reads every target value (NaN/Inf, content
    hashes, unreadable chunks), recomputes the stats, and reads every tar sample's json as training does.

    `experts` defaults to every expert found in any shard or stats file. A group's fingerprint must
    equal `expected[expert]` when given, else the most common one among the shards.
    """
    problems: list[Problem] = []
    stores: dict[str, ShardStore] = {}
    for shard in corpus.shards:
        tar, path = corpus.tar_path(shard), shard_store_path(corpus.tar_path(shard))
        try:
            tar_keys = read_tar_keys(tar)
        except UserError as e:
            problems.append(Problem(shard.name, str(e), "restore the shard from its source"))
            continue
        if len(tar_keys) != shard.samples:
            problems.append(
                Problem(
                    shard.name,
                    f"corpus.json lists {shard.samples} samples, the tar holds {len(tar_keys)}",
                    "restore the shard or corpus.json from their source",
                )
            )
        if full:
            for what in _tar_samples_problems(tar, tar_keys):
                problems.append(Problem(shard.name, what, "fix or drop the sample at its source and re-shard"))
        if not path.is_dir():
            problems.append(Problem(shard.name, f"no store at {path.name}", _extract_cmd(corpus, "NAME")))
            continue
        store, error = _open(partial(_opened_store, path))
        if store is None:
            problems.append(
                Problem(shard.name, f"{path.name} cannot be read ({error})", f"delete {path} and re-extract")
            )
            continue
        version = store.attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            problems.append(
                Problem(
                    shard.name,
                    f"schema version {version}, expected {SCHEMA_VERSION}",
                    f"delete {path} and re-run coat-pipe extract",
                )
            )
            continue
        rate = store.attrs.get("store_rate")
        if not isinstance(rate, int | float) or not MIN_STORE_RATE <= rate <= MAX_STORE_RATE:  # NaN fails too
            problems.append(
                Problem(
                    shard.name,
                    f"store rate {rate!r} Hz outside [{MIN_STORE_RATE:g}, {MAX_STORE_RATE:g}]",
                    f"delete {path} and re-run coat-pipe extract",
                )
            )
            continue
        if store.keys != tar_keys:
            first = next(
                (i for i, (a, b) in enumerate(zip(store.keys, tar_keys, strict=False)) if a != b),
                min(len(store.keys), len(tar_keys)),
            )
            problems.append(
                Problem(
                    shard.name,
                    f"keys differ from the tar from index {first} "
                    f"({len(store.keys)} stored, {len(tar_keys)} in the tar)",
                    f"delete {path} and re-run coat-pipe extract",
                )
            )
            continue
        for name in store.temp_groups():
            problems.append(
                Problem(
                    shard.name,
                    f"group {name!r} left under its temporary name by an interrupted run",
                    f"re-run coat-pipe extract (it removes {name!r} and redoes the shard)",
                )
            )
        stores[shard.name] = store

    names = experts or store_experts(corpus)
    for expert in names:
        groups: dict[str, ExpertGroup] = {}
        for shard, store in stores.items():
            if expert not in store.experts():
                continue
            group, error = _open(partial(_opened_group, store, expert))
            if group is None:
                problems.append(
                    Problem(
                        shard,
                        f"{expert!r} group cannot be read ({error})",
                        _extract_cmd(corpus, expert, " --overwrite"),
                    )
                )
            else:
                groups[shard] = group
        try:
            stats = read_stats(corpus.root, expert)
        except ValueError as e:
            stats = None
            problems.append(Problem("stats", str(e), f"coat-pipe store stats {corpus.root}"))
        # The groups are the data and stats derive from them: trust the majority of groups over the stats.
        majority = Counter(g.fingerprint for g in groups.values()).most_common(1)[0][0] if groups else None
        want = (expected or {}).get(expert) or majority or (stats.fingerprint if stats else None)
        reference = next((g for g in groups.values() if g.fingerprint == want), None)
        damaged = False
        for shard, store in stores.items():
            group = groups.get(shard)
            if group is None:
                if expert not in store.experts():
                    problems.append(Problem(shard, f"no {expert!r} group", _extract_cmd(corpus, expert, "", reference)))
                damaged = True
                continue
            found = _group_problems(group, len(store.keys))
            if full and not found:
                found = _group_values_problems(group)
            for what in found:
                problems.append(
                    Problem(shard, f"{expert!r} group {what}", _extract_cmd(corpus, expert, " --overwrite", reference))
                )
            damaged = damaged or bool(found) or group.fingerprint != want
            if group.fingerprint != want:
                problems.append(
                    Problem(
                        shard,
                        f"{expert!r} group was made with other options (fingerprint {group.fingerprint}, "
                        f"expected {want})",
                        _extract_cmd(corpus, expert, " --overwrite", reference),
                    )
                )
        if stats is None:
            if not stats_path(corpus.root, expert).is_file():
                problems.append(Problem("stats", f"no stats/{expert}.json", f"coat-pipe store stats {corpus.root}"))
        elif stats.fingerprint != want:
            problems.append(
                Problem("stats", f"stats/{expert}.json is from other options", f"coat-pipe store stats {corpus.root}")
            )
        elif full and not damaged and len(groups) == len(corpus.shards):
            recomputed = compute_stats(corpus, expert)
            if not stats.matches(recomputed):
                problems.append(
                    Problem(
                        "stats",
                        f"stats/{expert}.json differs from the stats of the stored frames",
                        f"coat-pipe store stats {corpus.root}",
                    )
                )
    return problems


def _opened_store(path: Path) -> ShardStore:
    store = ShardStore(path)
    store.attrs, store.keys, store.experts()  # noqa: B018 - read now, so damage shows here
    return store


def _opened_group(store: ShardStore, expert: str) -> ExpertGroup:
    group = store.expert(expert)
    group.offsets, group.status, group.frames.shape, group.clip.shape  # noqa: B018 - read now, as above
    return group


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def store_info(corpus: CorpusInfo) -> dict[str, Any]:
    """Shards, clips, hours, and per expert: shards done, bytes, bytes per audio hour, status counts."""
    experts: dict[str, dict[str, Any]] = {}
    for shard in corpus.shards:
        path = shard_store_path(corpus.tar_path(shard))
        if not path.is_dir():
            continue
        store = ShardStore(path)
        for name in store.experts():
            group = store.expert(name)
            entry = experts.setdefault(
                name,
                {
                    "kind": group.attrs.get("kind"),
                    "dim": group.attrs.get("dim"),
                    "shards": 0,
                    "bytes": 0,
                    "frames": 0,
                    "seconds": 0.0,
                    "status": Counter(),
                },
            )
            entry["shards"] += 1
            entry["seconds"] += shard.seconds
            entry["bytes"] += _dir_bytes(group.path)
            entry["frames"] += int(group.attrs.get("frames_total", 0))
            entry["status"].update(group.attrs.get("status_counts", {}))
    for entry in experts.values():
        hours = entry.pop("seconds") / 3600
        entry["bytes_per_audio_hour"] = entry["bytes"] / hours if hours else 0.0
        entry["status"] = dict(entry["status"])
    return {"shards": len(corpus.shards), "clips": corpus.samples, "hours": corpus.seconds / 3600, "experts": experts}
