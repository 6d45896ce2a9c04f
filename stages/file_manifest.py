"""sha256 of every file in a folder, written beside them and checked before the folder is used.

Checkpoints, model bundles and the cached twins carry one (`manifest.json`): a file altered, truncated,
removed or added after the folder was written is named before anything in it is loaded. It stops damage
and careless edits, not someone who also rewrites the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from store_schema.errors import UserError

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_files(folder: Path) -> list[Path]:
    """Every file under `folder` but the manifest, in a fixed order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, **extra: Any) -> dict[str, Any]:
    """Write `folder/manifest.json` (atomically): each file's sha256 and size, and `extra` fields."""
    files = {
        str(p.relative_to(folder)): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in folder_files(folder)
    }
    record = extra | {"files": files}
    tmp = folder / f".{MANIFEST}.{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, folder / MANIFEST)
    return record


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest's record; UserError when it is missing or unreadable."""
    try:
        record = json.loads((folder / MANIFEST).read_text())
        if not isinstance(record.get("files"), dict):
            raise ValueError("no files")
        return record
    except (OSError, ValueError, AttributeError) as e:
        what = "missing" if isinstance(e, FileNotFoundError) else f"unreadable, {type(e).__name__}"
        raise UserError(f"{folder / MANIFEST}: {what}; cannot verify {folder}") from None


def verify_files(folder: Path, names: list[str] | None = None) -> None:
    """Every listed file (or those in `names`) as written, and no file the manifest does not list; UserError
    names the first that differs."""
    files = read_manifest(folder)["files"]
    if names is None:
        unlisted = [str(p.relative_to(folder)) for p in folder_files(folder) if str(p.relative_to(folder)) not in files]
        if unlisted:
            raise UserError(f"{folder / unlisted[0]}: not in {MANIFEST} (added after the folder was written)")
    for name in names if names is not None else sorted(files):
        entry, path = files.get(name), folder / name
        if entry is None:
            raise UserError(f"{path}: not in {folder / MANIFEST}; refusing to load it")
        if not path.is_file():
            raise UserError(f"{path}: missing (listed in {MANIFEST})")
        if path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
            raise UserError(f"{path}: differs from what was written (truncated or altered); refusing to load it")


def cached_folder(folder: Path, build: Callable[[Path], object]) -> Path:
    """A cache entry (a tiny twin): built once into a temporary folder, its manifest written, then renamed into
    place; verified on every later use. An entry without a manifest (killed mid-build, half deleted, or from
    before manifests) is rebuilt and replaced; one whose files were altered is refused, naming the file."""
    if (folder / MANIFEST).is_file():
        try:
            verify_files(folder)
        except UserError as e:
            raise UserError(f"{e}. The cache entry {folder} was altered: delete it and it is rebuilt") from None
        return folder
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    write_manifest(tmp)
    if folder.exists() and not (folder / MANIFEST).is_file():  # an incomplete entry: set aside, then replaced
        aside = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        with contextlib.suppress(OSError):
            os.rename(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(tmp, folder)  # atomic: a reader sees no entry or the whole entry
    except OSError:  # another process put the same entry there first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
