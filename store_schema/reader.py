"""Reading the store: one shard's root group and its expert groups, as small read-only views."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from store_schema.layout import CLIP, FRAMES, KEYS, OFFSETS, STATUS, ExpertSpec, is_temp_group, shard_store_path


@dataclass
class ExpertGroup:
    """One expert's targets for one shard. `frames_of(i)` is sample i's (T_i, D) store frames."""

    path: Path
    attrs: dict[str, Any]

    @cached_property
    def _group(self) -> zarr.Group:
        return zarr.open_group(self.path, mode="r")

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

    @property
    def frames(self) -> zarr.Array:
        return self._group[FRAMES]

    @property
    def clip(self) -> zarr.Array:
        return self._group[CLIP]

    def frames_of(self, index: int) -> np.ndarray:
        start, stop = self.offsets[index], self.offsets[index + 1]
        return self.frames[int(start) : int(stop)]


class ShardStore:
    """The Zarr store beside one tar: attributes, `keys`, and expert groups by name."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._root = zarr.open_group(self.path, mode="r")

    @classmethod
    def for_tar(cls, tar: Path) -> ShardStore:
        return cls(shard_store_path(tar))

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root.attrs)

    @cached_property
    def keys(self) -> list[str]:
        return self._root[KEYS][:].tolist()

    def _subdirs(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and (p / "zarr.json").is_file())

    def experts(self) -> list[str]:
        """Names of the expert groups in place (complete ones; temporary names excluded)."""
        return [n for n in self._subdirs() if n != KEYS and not is_temp_group(n)]

    def temp_groups(self) -> list[str]:
        return [n for n in self._subdirs() if is_temp_group(n)]

    def expert(self, name: str) -> ExpertGroup:
        path = self.path / name
        return ExpertGroup(path, dict(zarr.open_group(path, mode="r").attrs))
