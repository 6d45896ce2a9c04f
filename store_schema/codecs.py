"""Compression of the store's float16 arrays: the codec in use and the measurement that chose it.

`coat-pipe bench codecs CORPUS` re-runs the measurement on a corpus's own stored targets.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.storage import MemoryStore

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
