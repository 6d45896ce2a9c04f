"""Helpers for tests of bad input: the one-line refusal, and proof that nothing else changed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from typer.testing import Result


def tree_state(*roots: Path) -> dict[str, str]:
    """Every file and link under the roots (or the roots themselves), as path -> sha256 or link target."""
    state = {}
    for root in roots:
        paths = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
        for path in paths:
            if path.is_symlink():
                state[str(path)] = f"-> {os.readlink(path)}"
            elif path.is_file():
                state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def error_line(result: Result, code: int, *names: object) -> str:
    """The run ended with `code`, no traceback, and exactly one `error:` line naming each of `names`."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def rewrite_tar(tar: Path, change: dict[str, bytes | None]) -> None:
    """Rewrite a tar with the members named in `change` replaced by new bytes (None: removed)."""
    with tarfile.open(tar) as archive:
        members = [(m, archive.extractfile(m).read() if m.isreg() else None) for m in archive]  # type: ignore[union-attr]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for member, data in members:
            if member.name in change:
                data = change[member.name]
                if data is None:
                    continue
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    tar.write_bytes(buffer.getvalue())


def conversation(*turns: tuple[str, object]) -> bytes:
    """A sample's json entry with these (role, content) turns."""
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns], "duration": 1.0}).encode()


def damage_tar_header(tar: Path, index: int) -> int:
    """Overwrite the `index`-th member header of a tar with garbage; returns its byte offset."""
    data = bytearray(tar.read_bytes())
    offset = [i for i in range(0, len(data), 512) if data[i + 257 : i + 262] == b"ustar"][index]
    data[offset : offset + 512] = b"\x13" * 512
    tar.write_bytes(bytes(data))
    return offset
