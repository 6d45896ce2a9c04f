"""Shard leases in an object store, where POSIX locks do not exist: one small object per shard, created
only if absent (S3's conditional PUT, `If-None-Match: *`), renewed while the work goes on, expiring.

The lease holds its owner (host and pid) and an expiry time. Another extractor may take it over when it
has expired, or at once when its owner ran on the same host and that process is gone (a killed run that
is started again need not wait out the expiry).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

LEASE_SECONDS = float(os.environ.get("COAT_PIPE_LEASE_SECONDS", "600"))
POLL_SECONDS = 2.0


def _owner() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _record(seconds: float) -> bytes:
    return json.dumps(_owner() | {"expires": time.time() + seconds}).encode()


def _stale(path: Path) -> bool:
    """Whether the lease at `path` may be taken over: expired, or its owner on this host is gone."""
    try:
        held = json.loads(path.read_bytes())
    except FileNotFoundError:
        return True
    except ValueError:
        return True  # a torn or foreign object: nobody holds it in a form we can honour
    if time.time() > float(held.get("expires", 0)):
        return True
    if held.get("host") == socket.gethostname():
        try:
            os.kill(int(held["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
    return False


def _try_take(path: Path, seconds: float) -> bool:
    for attempt in range(2):
        try:
            path.fs.pipe_file(path.path, _record(seconds), mode="create")
            return True
        except FileExistsError:
            if attempt or not _stale(path):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.fs.rm_file(path.path)  # a racing taker may also delete it: only one create wins
    return False


@contextlib.contextmanager
def shard_lease(lock_dir: Path, shard_name: str, *, blocking: bool, seconds: float = LEASE_SECONDS) -> Iterator[bool]:
    """Hold the lease of one shard while the body runs; yields whether it was taken (always, if blocking)."""
    path = lock_dir / f"{shard_name}.lease"
    while not _try_take(path, seconds):
        if not blocking:
            yield False
            return
        time.sleep(POLL_SECONDS)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(seconds / 3):
            path.fs.pipe_file(path.path, _record(seconds))

    renewer = threading.Thread(target=renew, name=f"lease {shard_name}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(FileNotFoundError):
            path.fs.rm_file(path.path)
