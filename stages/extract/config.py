"""The typed settings of `coat-pipe extract`, from a YAML file then CLI flags."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from store_schema.layout import DEFAULT_STORE_RATE, MAX_STORE_RATE, MIN_STORE_RATE


class ExtractConfig(BaseModel):
    """Stage one. Written into every expert group's attributes (`extract_config`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    corpus: str  # folder with corpus.json and the tar shards, or an object-store URL (s3://bucket/prefix)
    experts: list[str] = Field(min_length=1)  # registry names, run together on each decoded clip
    # Hz of the stored frames; one value per store. From one frame per 2 s to one per 5 ms (the finest an
    # expert here produces is 100 Hz; beyond MAX_STORE_RATE a 30 s clip's frames would not fit memory)
    store_rate: float = Field(default=DEFAULT_STORE_RATE, ge=MIN_STORE_RATE, le=MAX_STORE_RATE)
    batch_seconds: float = Field(default=240.0, gt=0, le=86400)  # padded audio seconds per expert batch
    num_workers: int = Field(default=2, ge=0)  # DataLoader workers that decode and resample
    device: str = "cpu"  # torch device the experts run on: cpu, cuda, cuda:1
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"  # expert weights/activations on device
    shard_index: int | None = None  # this process's slice of the shards (default: SLURM / torch.distributed)
    num_shards: int | None = None  # how many slices the shards are split into
    overwrite: bool = False  # redo complete groups (otherwise they are skipped, or refused if stale)
    checkpoints: dict[str, str] = {}  # expert -> hub id or local path of its weights
    trust_remote_code: bool = False  # let transformers run a checkpoint's own code
    expert_options: dict[str, dict[str, Any]] = {}  # expert -> its own settings, e.g. {"mel": {"n_mels": 64}}
    progress: bool = True

    @field_validator("corpus", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("experts", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        return [v.strip() for v in value if v.strip()] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _check_slice(self) -> ExtractConfig:
        if (self.shard_index is None) != (self.num_shards is None):
            raise ValueError("give both shard_index and num_shards, or neither")
        if self.num_shards is not None and not 0 <= self.shard_index < self.num_shards:  # type: ignore[operator]
            raise ValueError(f"shard_index must lie in [0, {self.num_shards}), got {self.shard_index}")
        return self


def worker_slice(config: ExtractConfig) -> tuple[int, int]:
    """(index, count) of this process: the flags, else a SLURM array task, else torch.distributed, else (0, 1)."""
    if config.num_shards is not None and config.shard_index is not None:
        return config.shard_index, config.num_shards
    env = os.environ
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        # Arrays may start anywhere (--array=1-8): count from the array's first task.
        first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    return 0, 1
