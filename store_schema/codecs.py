"""Compression of the store's float16 arrays: the codec in use and the measurement that chose it.

`coat-pipe bench codecs CORPUS` re-runs the measurement on a corpus's own stored targets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.storage import MemoryStore

from store_schema.corpus import CorpusInfo
from store_schema.errors import UserError
from store_schema.layout import shard_store_path
from store_schema.reader import ShardStore, expert_groups

# Byte-shuffled zstd inside Blosc: on mel and pitch targets it stores 15-30 % fewer bytes than plain
# zstd at similar speed (docs/PERFORMANCE.md, "Store compression").
FRAME_CODEC = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")

CANDIDATES: dict[str, Any] = {
    "none": None,
    "zstd-3": ZstdCodec(level=3),
    "zstd-9": ZstdCodec(level=9),
    "blosc-lz4-shuffle": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "blosc-zstd-shuffle": BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),
    "blosc-zstd-bitshuffle": BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
}


def measure_codec(frames: np.ndarray, codec: Any, chunk_rows: int = 4096, repeats: int = 3) -> dict[str, float]:
    """Stored bytes / raw bytes, and write and read speed in MB/s of raw data, for (T, D) float16 frames."""
    raw = frames.astype(np.float16)
    best_write, best_read, stored = np.inf, np.inf, 0
    for _ in range(repeats):
        store = MemoryStore()
        array = zarr.create_array(
            store,
            shape=raw.shape,
            chunks=(min(chunk_rows, len(raw)), raw.shape[1]),
            dtype="float16",
            compressors=[codec] if codec is not None else None,
        )
        start = time.perf_counter()
        array[...] = raw
        best_write = min(best_write, time.perf_counter() - start)
        start = time.perf_counter()
        back = array[...]
        best_read = min(best_read, time.perf_counter() - start)
        stored = sum(len(v.to_bytes()) for k, v in store._store_dict.items() if not k.endswith("zarr.json"))
        if not np.array_equal(back, raw, equal_nan=True):
            raise RuntimeError(f"codec {codec} did not round-trip")
    mb = raw.nbytes / 1e6
    return {"ratio": stored / raw.nbytes, "write_mb_s": mb / best_write, "read_mb_s": mb / best_read}


def bench_codecs(corpus: CorpusInfo) -> tuple[Path, list[tuple[str, str, bool, dict[str, float]]]]:
    """Every candidate codec on the first shard's stored frames of each expert: (that store, rows of
    (expert, codec, whether it is the one in use, `measure_codec`'s figures))."""
    path = shard_store_path(corpus.tar_path(corpus.shards[0]))
    experts = expert_groups(path) if path.is_dir() else []
    if not experts:
        raise UserError(f"{path}: no expert groups to measure; run coat-pipe extract first")
    rows = []
    for expert in experts:
        frames = ShardStore(path).expert(expert).frames[:]
        for name, codec in CANDIDATES.items():
            in_use = codec is not None and codec.to_dict() == FRAME_CODEC.to_dict()
            rows.append((expert, name, in_use, measure_codec(frames, codec)))
    return path, rows
