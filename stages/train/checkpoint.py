"""Checkpoints that resume exactly and are checked before anything in them is loaded.

RUN/checkpoints/
  stepNNNNNNN/           DeepSpeed's own files (the trainable weights and their ZeRO optimizer states, client
                         state); the frozen base is not saved: it is the backbone's own checkpoint
    rng-rank{r}.json     each rank's Python, NumPy and torch RNG states, as plain JSON (no pickle)
    manifest.json        sha256 and size of every file above, written by rank 0 once all ranks are done
  latest                 the tag to resume from: written last, so a kill mid-save leaves the previous one
  best                   the tag with the best validation metric, when the run validates (kept whatever its age)

Only the newest `keep_checkpoints` tags stay; older ones are deleted once a newer one is published (its
manifest written from the files on disk, then `latest`), never the tag `latest` or `best` names.

DeepSpeed reads its state files with pickle, which runs code a planted file carries. A run directory
must therefore be trusted like code; the manifest at least refuses files altered or truncated after the
save, and the RNG state is never unpickled.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from stages.file_manifest import MANIFEST, folder_files, sha256_file, write_manifest
from store_schema.errors import UserError

LATEST = "latest"
BEST = "best"
TAG = re.compile(r"step\d{7}")


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy and torch (CPU) RNG states as JSON values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(
    engine: Any, checkpoints: Path, step: int, client_state: dict[str, Any], rank: int, keep: int | None = None
) -> str:
    """DeepSpeed's checkpoint of the trainable weights, each rank's RNG state, then (rank 0) the manifest, then
    `latest`, then (with `keep`) the older tags beyond the newest `keep` are deleted."""
    tag = f"step{step:07d}"
    engine.save_checkpoint(
        str(checkpoints), tag=tag, client_state=client_state, save_latest=False, exclude_frozen_parameters=True
    )
    _write_atomic(checkpoints / tag / f"rng-rank{rank}.json", json.dumps(rng_state()))
    if dist.is_initialized():
        dist.barrier()  # every rank's files are on disk before the manifest lists them
    if rank == 0:
        folder = checkpoints / tag
        write_manifest(folder, tag=tag)
        _write_atomic(checkpoints / LATEST, tag)
        if keep is not None:
            prune_checkpoints(checkpoints, keep)
    if dist.is_initialized():
        dist.barrier()
    return tag


def _named_tag(checkpoints: Path, pointer: str) -> str | None:
    path = checkpoints / pointer
    return path.read_text().strip() if path.is_file() else None


def prune_checkpoints(checkpoints: Path, keep: int) -> list[str]:
    """Delete every step tag but the newest `keep`, never the ones `latest` and `best` name; returns the deleted.
    Called after `latest` names the newest, so a kill mid-delete leaves a published checkpoint to resume from
    (and a half-deleted older tag, which nothing names and the next save deletes)."""
    tags = sorted(p.name for p in checkpoints.iterdir() if p.is_dir() and TAG.fullmatch(p.name))
    protected = {_named_tag(checkpoints, LATEST), _named_tag(checkpoints, BEST)}
    doomed = [tag for tag in tags[: max(0, len(tags) - keep)] if tag not in protected]
    for tag in doomed:
        shutil.rmtree(checkpoints / tag, ignore_errors=True)
    return doomed


def mark_best(checkpoints: Path, tag: str) -> None:
    """`best` names `tag` (a published checkpoint): retention keeps it whatever its age."""
    _write_atomic(checkpoints / BEST, tag)


def verified_tag(checkpoints: Path, rank: int) -> str:
    """The tag `latest` names, once every file this rank will read matches the manifest written at save.

    Raises UserError naming the file and what is wrong: no `latest`, a missing tag folder or manifest,
    a file missing, truncated or altered, or a file the manifest does not list."""
    latest = checkpoints / LATEST
    if not latest.is_file():
        raise UserError(f"{latest}: no such file; the run has no complete checkpoint to resume from")
    tag = latest.read_text().strip()
    folder = checkpoints / tag
    if not tag or "/" in tag or not folder.is_dir():
        raise UserError(f"{latest} names checkpoint {tag!r}, which does not exist in {checkpoints}")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        what = type(e).__name__
        raise UserError(f"{folder / MANIFEST}: missing or unreadable ({what}); cannot verify {tag}") from None
    listed = set(manifest)
    present = {str(p.relative_to(folder)) for p in folder_files(folder)}
    if present - listed:
        unlisted = ", ".join(sorted(present - listed))
        raise UserError(f"{folder}: files the checkpoint's manifest does not list: {unlisted}")
    rng = f"rng-rank{rank}.json"
    if rng not in listed:
        raise UserError(f"{folder}: no {rng}; this checkpoint was written by fewer ranks than this run has")
    for name, entry in sorted(manifest.items()):
        other_rank = "zero_pp_rank_" in name and f"zero_pp_rank_{rank}_" not in name
        if other_rank or (name.startswith("rng-rank") and name != rng):
            continue  # another rank's own file: that rank checks it
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path}: missing from checkpoint {tag}")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise UserError(f"{path}: differs from what was saved (truncated or altered); refusing to load it")
    return tag


def load_rng(checkpoints: Path, tag: str, rank: int) -> None:
    set_rng_state(json.loads((checkpoints / tag / f"rng-rank{rank}.json").read_text()))
