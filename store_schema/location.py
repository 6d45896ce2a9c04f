"""Where a corpus lives: a local folder, or an object-store URL (`s3://bucket/prefix`, `gs://…`) read and
written through fsspec, and the few operations that differ between the two.

A URL becomes a `UPath`, a `pathlib.Path` look-alike over fsspec, so the corpus and store code joins,
lists and reads paths the same way for both. Credentials and endpoints come from where fsspec's
backends look for them (for S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`,
`~/.aws`; `FSSPEC_S3_*` variables for any other s3fs option); they are never written into a config, a
log or the store. What object stores lack, this module supplies:
- no rename: a finished Zarr folder is published by copying its objects, every `zarr.json` last, the
  root's very last, so a reader sees either no group or the whole group (`publish`);
- no replace-by-rename for small files: one PUT is atomic (`replace_file`);
- no POSIX locks: `store_schema/lease.py`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
from collections.abc import Iterator
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from store_schema.errors import UserError

LOCAL_PROTOCOLS = ("", "file", "local")


def corpus_path(value: str | os.PathLike[str]) -> Path:
    """A local `Path` for a folder or a `file://` URL; a `UPath` for any other fsspec URL."""
    if isinstance(value, Path) or hasattr(value, "protocol"):  # already a path (a UPath is not os.PathLike)
        return value  # type: ignore[return-value]
    text = os.fspath(value)
    if "://" not in text:
        return Path(text)
    protocol, _, rest = text.partition("://")
    if protocol in LOCAL_PROTOCOLS:
        return Path(rest if rest.startswith("/") else f"/{rest}")
    try:
        from upath import UPath
    except ImportError:
        raise UserError(f"{text}: object-store URLs need the extra: pip install 'coat-pipe[cloud]'") from None
    try:
        return UPath(text, **_defaults(protocol))
    except (ValueError, ImportError) as e:  # an unknown protocol, or its fsspec backend is not installed
        raise UserError(f"{text}: cannot open this URL ({e})") from None


def _defaults(protocol: str) -> dict[str, Any]:
    """Bounded time for every S3 call: an endpoint that accepts connections and never answers is an error
    within about 25 s (two attempts of at most 5 s to connect and 10 s between bytes), not the hour
    that botocore's and s3fs's retries stacked on each other would wait. botocore's standard retries also
    back off on throttling (SlowDown), which s3fs would otherwise retry itself. Left alone when the user
    configured s3fs's client (`FSSPEC_S3_CONFIG_KWARGS` or fsspec's config file)."""
    import fsspec.config

    if protocol not in ("s3", "s3a") or "config_kwargs" in fsspec.config.conf.get("s3", {}):
        return {}
    import s3fs

    s3fs.S3FileSystem.retries = 1  # s3fs's own loop around botocore's (5 by default): one loop is enough
    return {
        "config_kwargs": {
            "connect_timeout": 5,
            "read_timeout": 10,
            "retries": {"total_max_attempts": 2, "mode": "standard"},
        }
    }


def is_remote(path: Path) -> bool:
    return getattr(path, "protocol", "") not in LOCAL_PROTOCOLS


def worker_context(path: Path, preload: str) -> BaseContext | None:
    """How DataLoader workers reading `path` are started: forked (PyTorch's default) for a local corpus;
    from a fork server for an object store. fsspec runs its clients on an event-loop thread, and a
    process forked while that thread (or any other) holds a lock inherits the lock held forever.

    The fork server imports `preload` (the dataset's module: torch, zarr, the decoders) once, when it
    starts; every later epoch's workers are forked from it with those imports done, instead of each
    importing torch again. Importing starts no thread, so the server stays safe to fork from."""
    if not is_remote(path):
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([preload])  # read when the server starts: the first loader's call decides
    return context


def zarr_store(path: Path, read_only: bool) -> Any:
    """What `zarr.open_group` takes for the folder at `path`: the path itself, or an fsspec store."""
    if not is_remote(path):
        return path
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(str(path), storage_options=dict(path.storage_options), read_only=read_only)


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old content or the new, never a part."""
    if is_remote(path):
        path.write_bytes(data)  # one PUT: object stores replace an object whole
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def remove_tree(path: Path) -> None:
    """Delete a folder (a prefix) and everything in it; nothing there is fine."""
    if is_remote(path):
        with contextlib.suppress(FileNotFoundError):
            path.fs.rm(path.path, recursive=True)
        return
    shutil.rmtree(path, ignore_errors=True)


def publish(staging: Path, final: Path) -> None:
    """Move a finished Zarr folder from `staging` to `final`, which must not exist.

    Locally one rename. In an object store, every object is copied with the `zarr.json` files last
    (deepest first, `final/zarr.json` at the very end), then the staging prefix is deleted: until that
    last copy, `final` holds no group metadata, which readers take as "no group" (`expert_groups`)."""
    if not is_remote(staging):
        os.rename(staging, final)
        return
    fs, source, target = staging.fs, staging.path.rstrip("/"), final.path.rstrip("/")
    objects = sorted(fs.find(source))
    metadata = sorted((o for o in objects if o.endswith("/zarr.json")), key=lambda o: -o.count("/"))
    for obj in [*(o for o in objects if not o.endswith("/zarr.json")), *metadata]:
        fs.copy(obj, target + obj[len(source) :])
    fs.rm(source, recursive=True)


def unpublish(final: Path) -> None:
    """Remove a published Zarr folder so that readers stop seeing it first (its root `zarr.json`), then
    the rest: a reader never sees a group with some of its arrays gone."""
    if not is_remote(final):
        shutil.rmtree(final)
        return
    with contextlib.suppress(FileNotFoundError):
        final.fs.rm(final.path.rstrip("/") + "/zarr.json")
    remove_tree(final)


def check_reachable(root: Path) -> None:
    """One listing of `root`, so that a wrong credential, a missing bucket or an endpoint that does not
    answer is one clear error naming the URL before any work starts. A prefix with nothing in it is fine."""
    if not is_remote(root):
        return
    with storage_errors(root):
        root.fs.invalidate_cache()  # a listing cached earlier in this process may predate the bucket
        try:
            root.fs.ls(root.path, detail=False)
        except FileNotFoundError as e:
            if "specified bucket does not exist" in str(e).lower() or "nosuchbucket" in str(e).lower():
                raise UserError(f"{root}: not found: no such bucket at this endpoint") from None


@contextlib.contextmanager
def storage_errors(where: Path | str) -> Iterator[None]:
    """Object-store failures as one line naming the URL and the reason, never a secret, never a traceback:
    wrong credentials, a missing bucket, an endpoint that does not answer."""
    try:
        yield
    except (UserError, FileNotFoundError):
        raise
    except PermissionError as e:
        raise UserError(f"{where}: access denied; check the credentials ({_reason(e)})") from None
    except Exception as e:
        # botocore's (and gcsfs's) own errors: no credentials, a refused signature, no connection
        module = type(e).__module__.split(".")[0]
        if module not in ("botocore", "aiobotocore", "s3fs", "gcsfs", "google", "aiohttp"):
            raise
        raise UserError(
            f"{where}: the object store refused or did not answer ({type(e).__name__}: {_reason(e)})"
        ) from None


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
