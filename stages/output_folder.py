"""An output folder written whole: a command writes into a staging folder beside it, which then takes its place.

Readers never see a mix of an old output and a new one (an export's old merged weights beside a new adapter),
and a run that fails leaves the old folder as it was. The two renames at the end are not one atomic step:
between them the folder is briefly absent, never mixed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from store_schema.corpus import refuse_non_empty
from store_schema.errors import UserError


@contextlib.contextmanager
def replaced_folder(out: Path, overwrite: bool, flag: str = "--overwrite") -> Iterator[Path]:
    """Yield a staging folder; when the block succeeds it becomes `out`. `out` must be new or empty unless
    `overwrite`, and then the old folder is replaced as a whole, none of its files left behind."""
    out = Path(out)
    refuse_taken(out, overwrite, flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    staging.chmod(0o777 & ~_umask())
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.rename(out, old)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def refuse_taken(out: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    """Before a long job: `out` must be a new or empty folder, or `overwrite` given."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"{out} is not a folder")
    if not overwrite:
        try:
            refuse_non_empty(out)
        except UserError as e:
            raise UserError(f"{e}, or pass {flag} to replace it whole") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
