"""Validating a store against its corpus, summarising it, and writing its stats files."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from store_schema.corpus import CorpusInfo, read_tar_keys
from store_schema.layout import SCHEMA_VERSION, ExpertSpec, shard_store_path, stats_path
from store_schema.reader import ExpertGroup, ShardStore
from store_schema.stats import RunningStats, stats_mask, stats_payload, write_stats_file


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


def read_stats(corpus_root: Path, expert: str) -> dict[str, Any] | None:
    path = stats_path(corpus_root, expert)
    return json.loads(path.read_text()) if path.is_file() else None


def _group_problems(group: ExpertGroup, num_samples: int) -> list[str]:
    """Internal consistency of one group: what a crash or a hand edit could break."""
    found = []
    offsets, status = group.offsets, group.status
    if len(offsets) != num_samples + 1 or len(status) != num_samples:
        found.append(f"has {len(status)} statuses and {len(offsets)} offsets for {num_samples} keys")
    elif offsets[-1] != group.frames.shape[0] or (np.diff(offsets) < 0).any():
        found.append(f"offsets end at {offsets[-1]} but frames has {group.frames.shape[0]} rows")
    elif ((status == 0) & (np.diff(offsets) == 0)).any():
        found.append("has ok samples with no frames")
    if group.attrs.get("schema_version") != SCHEMA_VERSION:
        found.append(f"was written with schema version {group.attrs.get('schema_version')}, expected {SCHEMA_VERSION}")
    return found


def check_store(
    corpus: CorpusInfo, experts: list[str] | None = None, expected: dict[str, str] | None = None
) -> list[Problem]:
    """Every reason the store cannot be trusted for training: one Problem per finding.

    `experts` defaults to every expert found in any shard or stats file. A group's fingerprint must
    equal `expected[expert]` when given, else the most common one among the shards.
    """
    problems: list[Problem] = []
    stores: dict[str, ShardStore] = {}
    for shard in corpus.shards:
        tar, path = corpus.tar_path(shard), shard_store_path(corpus.tar_path(shard))
        if not path.is_dir():
            problems.append(Problem(shard.name, f"no store at {path.name}", _extract_cmd(corpus, "NAME")))
            continue
        store = ShardStore(path)
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
        tar_keys = read_tar_keys(tar)
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

    stats_dir = corpus.root / "stats"
    found_stats = sorted(p.stem for p in stats_dir.glob("*.json")) if stats_dir.is_dir() else []
    names = experts or sorted({e for s in stores.values() for e in s.experts()} | set(found_stats))
    for expert in names:
        groups = {shard: s.expert(expert) for shard, s in stores.items() if expert in s.experts()}
        stats = read_stats(corpus.root, expert)
        # The groups are the data and stats derive from them: trust the majority of groups over the stats.
        majority = Counter(g.fingerprint for g in groups.values()).most_common(1)[0][0] if groups else None
        want = (expected or {}).get(expert) or majority or (stats or {}).get("fingerprint")
        reference = next((g for g in groups.values() if g.fingerprint == want), None)
        for shard, store in stores.items():
            group = groups.get(shard)
            if group is None:
                problems.append(Problem(shard, f"no {expert!r} group", _extract_cmd(corpus, expert, "", reference)))
                continue
            for what in _group_problems(group, len(store.keys)):
                problems.append(
                    Problem(shard, f"{expert!r} group {what}", _extract_cmd(corpus, expert, " --overwrite", reference))
                )
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
            problems.append(Problem("stats", f"no stats/{expert}.json", f"coat-pipe store stats {corpus.root}"))
        elif stats.get("fingerprint") != want:
            problems.append(
                Problem("stats", f"stats/{expert}.json is from other options", f"coat-pipe store stats {corpus.root}")
            )
    return problems


def finalize_stats(corpus: CorpusInfo, spec: ExpertSpec) -> bool:
    """Merge the groups' partial stats into `stats/<expert>.json` if every shard's group is in place."""
    frames, clip, clips = RunningStats.empty(spec.dim), RunningStats.empty(spec.dim), 0
    for shard in corpus.shards:
        path = shard_store_path(corpus.tar_path(shard))
        if not (path / spec.expert / "zarr.json").is_file():
            return False
        attrs = ShardStore(path).expert(spec.expert).attrs
        if attrs.get("fingerprint") != spec.fingerprint:
            return False
        frames.merge(RunningStats.from_dict(attrs["partial_stats"]["frames"]))
        clip.merge(RunningStats.from_dict(attrs["partial_stats"]["clip"]))
        clips += int(attrs["status_counts"].get("ok", 0))
    payload = stats_payload(spec.expert, spec.fingerprint, spec.kind, frames, clip, clips, len(corpus.shards))
    write_stats_file(stats_path(corpus.root, spec.expert), payload)
    return True


def recompute_stats(corpus: CorpusInfo, expert: str, rows_per_read: int = 65536) -> dict[str, Any]:
    """Recompute `stats/<expert>.json` from the stored frames themselves (not the partial sums)."""
    frames_stats, clip_stats, clips, spec = None, None, 0, None
    for shard in corpus.shards:
        group = ShardStore.for_tar(corpus.tar_path(shard)).expert(expert)
        if spec is not None and group.spec.fingerprint != spec.fingerprint:
            raise ValueError(f"{shard.name}: {expert!r} fingerprint differs from the first shard's; run store check")
        spec = group.spec
        if frames_stats is None or clip_stats is None:
            frames_stats, clip_stats = RunningStats.empty(spec.dim), RunningStats.empty(spec.dim)
        total = group.frames.shape[0]
        for start in range(0, total, rows_per_read):
            block = group.frames[start : start + rows_per_read]
            frames_stats.update(block, stats_mask(spec.kind, block))
        ok = group.status == 0
        clip_block = group.clip[:][ok]
        clip_stats.update(clip_block, stats_mask(spec.kind, clip_block, clip=True))
        clips += int(ok.sum())
    if spec is None or frames_stats is None or clip_stats is None:
        raise ValueError("the corpus has no shards")
    payload = stats_payload(expert, spec.fingerprint, spec.kind, frames_stats, clip_stats, clips, len(corpus.shards))
    write_stats_file(stats_path(corpus.root, expert), payload)
    return payload


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
