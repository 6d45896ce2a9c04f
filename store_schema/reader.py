"""Reading the store: one shard's root group and its expert groups, as small read-only views."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from store_schema.corpus import CorpusInfo
from store_schema.layout import (
    CLIP,
    FRAMES,
    KEYS,
    OFFSETS,
    STATS_DIR,
    STATUS,
    ExpertSpec,
    is_temp_group,
    shard_store_path,
)
from store_schema.location import zarr_store


@dataclass
class ExpertGroup:
    """One expert's targets for one shard. `frames_of(i)` is sample i's (T_i, D) store frames."""

    path: Path
    attrs: dict[str, Any]

    @cached_property
    def _group(self) -> zarr.Group:
        return zarr.open_group(zarr_store(self.path, read_only=True), mode="r", zarr_format=3)

    @property
    def spec(self) -> ExpertSpec:
        return ExpertSpec.from_attrs(self.attrs)

    @property
    def fingerprint(self) -> str:
        return str(self.attrs.get("fingerprint", ""))

    @cached_property
    def offsets(self) -> np.ndarray:
        return self._group[OFFSETS][:]

    @cached_property
    def status(self) -> np.ndarray:
        return self._group[STATUS][:]

    def array(self, name: str) -> zarr.Array:
        return self._group[name]

    # Array handles are opened once: in an object store each opening is a request for its metadata.
    @cached_property
    def frames(self) -> zarr.Array:
        return self._group[FRAMES]

    @cached_property
    def clip(self) -> zarr.Array:
        return self._group[CLIP]

    def frames_of(self, index: int) -> np.ndarray:
        start, stop = self.offsets[index], self.offsets[index + 1]
        return self.frames[int(start) : int(stop)]


class ShardStore:
    """The Zarr store beside one tar: attributes, `keys`, and expert groups by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._root = zarr.open_group(zarr_store(self.path, read_only=True), mode="r", zarr_format=3)

    @classmethod
    def for_tar(cls, tar: Path) -> ShardStore:
        return cls(shard_store_path(tar))

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root.attrs)

    @cached_property
    def keys(self) -> list[str]:
        return self._root[KEYS][:].tolist()

    def experts(self) -> list[str]:
        """Names of the expert groups in place (complete ones; temporary names excluded)."""
        return expert_groups(self.path)

    def temp_groups(self) -> list[str]:
        return [n for n in _group_dirs(self.path) if is_temp_group(n)]

    def expert(self, name: str) -> ExpertGroup:
        path = self.path / name
        opened = zarr.open_group(zarr_store(path, read_only=True), mode="r", zarr_format=3)
        group = ExpertGroup(path, dict(opened.attrs))
        group.__dict__["_group"] = opened  # the cached_property, filled: no second opening
        return group


def _group_dirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and (p / "zarr.json").is_file())


def expert_groups(store: Path) -> list[str]:
    """The expert groups in place in one shard's store, read from its folders alone (no Zarr metadata)."""
    return [n for n in _group_dirs(store) if n != KEYS and not is_temp_group(n)]


def group_fingerprint(store: Path, expert: str) -> str | None:
    """The fingerprint of EXPERT's complete group in one shard's store; None when it has none."""
    path = store / expert
    if not (path / "zarr.json").is_file():
        return None
    return str(zarr.open_group(zarr_store(path, read_only=True), mode="r", zarr_format=3).attrs.get("fingerprint"))


def store_experts(corpus: CorpusInfo) -> list[str]:
    """Every expert the store holds anything of: a group in any shard's store, or a stats file.

    One that is only partly there is listed too, so that whoever uses it meets `store check`'s finding
    rather than silently training without it."""
    names = set()
    for shard in corpus.shards:
        path = shard_store_path(corpus.tar_path(shard))
        if path.is_dir():
            names.update(expert_groups(path))
    stats_dir = corpus.root / STATS_DIR
    if stats_dir.is_dir():
        names.update(p.stem for p in stats_dir.glob("*.json") if not p.name.startswith("."))
    return sorted(names)
