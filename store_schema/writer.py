"""Writing the store: the shard's root group, expert groups written whole and renamed into place, and locks."""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from store_schema.codecs import FRAME_CODEC
from store_schema.corpus import CorpusInfo
from store_schema.errors import UserError
from store_schema.layout import (
    CLIP,
    FRAME_CHUNK,
    FRAMES,
    KEYS,
    LOCK_DIR,
    OFFSETS,
    SCHEMA_VERSION,
    STATS_DIR,
    STATUS,
    TMP_MARK,
    ExpertSpec,
    Status,
    is_temp_group,
    shard_store_path,
)
from store_schema.lease import shard_lease
from store_schema.location import is_remote, publish, remove_tree, unpublish, zarr_store
from store_schema.reader import store_experts
from store_schema.stats import ExpertStats, RunningStats, compute_stats, stats_mask, write_stats


def refuse_links_out(corpus: CorpusInfo) -> None:
    """The folders the store is written into must lie in the corpus: a planted link would carry writes elsewhere."""
    written = [corpus.root / name for name in (STATS_DIR, "logs", LOCK_DIR)]
    written += [shard_store_path(corpus.tar_path(s)) for s in corpus.shards]
    if is_remote(corpus.root):
        return  # an object store has no links
    linked = [p for p in written if p.is_symlink()]
    if linked:
        raise UserError(f"{linked[0]} is a symbolic link; the store is written only inside {corpus.root}")


@contextmanager
def shard_lock(corpus_root: Path, shard_name: str, *, blocking: bool) -> Iterator[bool]:
    """An exclusive lock on one shard's store, held by at most one process; yields whether it was taken.

    POSIX record locks (lockf), not flock: they belong to the process, so forked DataLoader workers
    never inherit them, and the kernel drops them when the process dies, even by SIGKILL.
    """
    lock_dir = corpus_root / LOCK_DIR
    if is_remote(corpus_root):
        with shard_lease(lock_dir, shard_name, blocking=blocking) as taken:
            yield taken
        return
    lock_dir.mkdir(exist_ok=True)
    fd = os.open(lock_dir / f"{shard_name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES, by platform: another process has it
            yield False
            return
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            _warn_no_locks(lock_dir, e)
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@functools.cache
def _warn_no_locks(lock_dir: Path, error: OSError) -> None:
    warnings.warn(
        f"{lock_dir}: the file system refuses locks ({error.strerror}); going on without them. "
        "Give concurrent extract runs disjoint --shard-index slices.",
        stacklevel=3,
    )


def ensure_shard_store(tar: Path, keys: list[str], store_rate: float) -> Path:
    """The shard's root group with its `keys`, created atomically if absent, else checked against the tar.

    Call under the shard's lock.
    """
    path = shard_store_path(tar)
    if (path / "zarr.json").is_file():
        root = zarr.open_group(zarr_store(path, read_only=True), mode="r", zarr_format=3)
        version = root.attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UserError(
                f"{path}: store schema version {version}, this coat-pipe writes {SCHEMA_VERSION}; "
                f"move the old store aside or re-extract into a fresh copy of the corpus"
            )
        if root.attrs.get("store_rate") != store_rate:
            raise UserError(
                f"{path}: the store's frame rate is {root.attrs.get('store_rate')} Hz, this run asks for "
                f"{store_rate} Hz; one store holds one rate"
            )
        stored = root[KEYS][:].tolist()
        if stored != keys:
            raise UserError(f"{path}: its keys differ from {tar.name}'s; the tar changed after extraction")
        return path
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    remove_tree(tmp)
    root = zarr.open_group(zarr_store(tmp, read_only=False), mode="w")
    root.attrs.update(
        {"schema_version": SCHEMA_VERSION, "store_rate": store_rate, "shard": tar.name, "samples": len(keys)}
    )
    root.create_array(KEYS, shape=(len(keys),), dtype=str)[:] = np.array(keys, dtype=str)
    if is_remote(path):
        remove_tree(path)  # objects without the root's metadata: what a killed publish leaves
    publish(tmp, path)
    return path


def remove_temp_groups(store: Path) -> list[str]:
    """Delete groups left under a temporary name by a killed run. Call under the shard's lock."""
    removed = [p.name for p in store.iterdir() if p.is_dir() and is_temp_group(p.name)]
    for name in removed:
        remove_tree(store / name)
    return removed


def content_digest(values: np.ndarray) -> str:
    """sha256 of an array's values as stored (C order, its own dtype): `store check --full` recomputes it."""
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


class ExpertGroupWriter:
    """Collects one expert's targets for every sample of a shard, then writes the group in one go.

    Every sample must receive a result (targets, or a status with no frames) before `commit`,
    so `offsets` always has N + 1 entries and indices stay aligned with `keys`.
    """

    def __init__(self, store: Path, spec: ExpertSpec, num_samples: int, run_config: dict[str, Any]) -> None:
        self.store, self.spec, self.run_config = store, spec, run_config
        self.frames: list[np.ndarray | None] = [None] * num_samples
        self.clip = np.zeros((num_samples, spec.dim), dtype=np.float16)
        self.status = np.full(num_samples, 255, dtype=np.uint8)  # 255: no result yet

    def put(self, index: int, status: Status, frames: np.ndarray | None = None, clip: np.ndarray | None = None) -> None:
        if status == Status.OK:
            if frames is None or clip is None or frames.shape[1:] != (self.spec.dim,):
                raise ValueError(f"sample {index}: expected (T, {self.spec.dim}) frames and a clip target")
            self.frames[index] = frames.astype(np.float16)
            self.clip[index] = clip
        self.status[index] = status

    @property
    def done(self) -> bool:
        return bool((self.status != 255).all())

    def commit(self) -> dict[str, Any]:
        """Write under a temporary name, then rename into place (replacing an older group). Returns attrs."""
        missing = np.flatnonzero(self.status == 255)
        if missing.size:
            raise RuntimeError(f"{self.store}/{self.spec.expert}: samples {missing[:5].tolist()} have no result")
        dim = self.spec.dim
        blocks = [f if f is not None else np.zeros((0, dim), np.float16) for f in self.frames]
        lengths = np.array([len(b) for b in blocks], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        frames = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float16)

        # Partial stats in float64, from the float16 values that training will read.
        ok = self.status == Status.OK
        frame_stats, clip_stats = RunningStats.empty(dim), RunningStats.empty(dim)
        frame_stats.update(frames, stats_mask(self.spec.kind, frames))
        clip_stats.update(self.clip[ok], stats_mask(self.spec.kind, self.clip[ok], clip=True))

        counts = {
            Status(s).name.lower(): int(n) for s, n in zip(*np.unique(self.status, return_counts=True), strict=False)
        }
        attrs = {
            **self.spec.to_attrs(),
            "schema_version": SCHEMA_VERSION,
            "samples": len(self.status),
            "frames_total": int(len(frames)),
            "status_counts": counts,
            "partial_stats": {"frames": frame_stats.to_dict(), "clip": clip_stats.to_dict()},
            "extract_config": self.run_config,
            "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

        tmp_name = f"{self.spec.expert}{TMP_MARK}{os.getpid()}"
        remove_tree(self.store / tmp_name)
        root = zarr.open_group(zarr_store(self.store, read_only=False), mode="r+")
        group = root.create_group(tmp_name, overwrite=True)
        # Every chunk is written, even one equal to the fill value (zarr skips those by default), so that
        # `store check` can tell a deleted chunk file from a chunk of zeros.
        every_chunk = {"write_empty_chunks": True}
        arrays = {
            FRAMES: (frames, (min(FRAME_CHUNK, max(1, len(frames))), dim), [FRAME_CODEC]),
            OFFSETS: (offsets, None, "auto"),
            CLIP: (self.clip, None, [FRAME_CODEC]),
            STATUS: (self.status, None, "auto"),
        }
        chunks_written, content = {}, {}
        for name, (values, chunks, compressors) in arrays.items():
            array = group.create_array(
                name,
                shape=values.shape,
                dtype=values.dtype,
                chunks=chunks or "auto",
                compressors=compressors,
                config=every_chunk,
            )
            array[...] = values
            chunks_written[name] = array.nchunks
            content[name] = content_digest(values)
        group.attrs.update(attrs | {"chunks_written": chunks_written, "content_sha256": content})

        final = self.store / self.spec.expert
        if is_remote(self.store):
            # No rename: the old group disappears first (its metadata first), then the new one is
            # copied in with its metadata last; a reader sees the old group, no group, or the new one.
            unpublish(final)
            publish(self.store / tmp_name, final)
        elif final.exists():  # --overwrite: move the old group aside first so a crash leaves a temp name
            old = self.store / f"{self.spec.expert}{TMP_MARK}old-{os.getpid()}"
            os.rename(final, old)
            os.rename(self.store / tmp_name, final)
            shutil.rmtree(old)
        else:
            os.rename(self.store / tmp_name, final)
        return attrs


def rewrite_stats(corpus: CorpusInfo, experts: list[str] | None = None) -> Iterator[ExpertStats]:
    """`store stats`: recompute `stats/<expert>.json` of EXPERTS (default: all the store holds) from the
    stored frames themselves, write each, and yield it."""
    refuse_links_out(corpus)
    names = experts or store_experts(corpus)
    if not names:
        raise UserError(f"{corpus.root}: no expert groups found; run coat-pipe extract first")
    for name in names:
        try:
            stats = compute_stats(corpus, name)
        except (ValueError, FileNotFoundError, KeyError) as e:
            raise UserError(f"{corpus.root}: cannot compute {name} stats ({e}); run coat-pipe store check") from None
        write_stats(corpus.root, stats)
        yield stats
