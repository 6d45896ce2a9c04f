"""The corpus contract: WebDataset tar shards of (flac, json) samples and the `corpus.json` that lists them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import webdataset as wds
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_iterator

from store_schema.errors import UserError
from store_schema.location import check_reachable, corpus_path, is_remote, replace_file, storage_errors

CORPUS_FILE = "corpus.json"
REJECTED_FILE = "rejected.jsonl"  # the rows `shard` could not use, and why
AUDIO_EXTENSIONS = ("flac", "wav", "ogg", "mp3")  # tar entries read as the clip's audio, first found wins
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ShardInfo:
    name: str  # file name of the tar, relative to the corpus root
    samples: int
    seconds: float


@dataclass(frozen=True)
class CorpusInfo:
    """What `corpus.json` says: the shards in order, their sizes and the audio's sample rate."""

    root: Path
    sample_rate: int
    shards: tuple[ShardInfo, ...]
    created_by: str = ""

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.shards)

    def tar_path(self, shard: ShardInfo) -> Path:
        return self.root / shard.name


def read_corpus(root: Path | str) -> CorpusInfo:
    """Read `root/corpus.json` (a folder, or an object-store URL), with an error that says how to make one
    when it is missing or broken."""
    root = corpus_path(root)
    check_reachable(root)
    with storage_errors(root):
        return _read_corpus(root)


def _read_corpus(root: Path) -> CorpusInfo:
    path = root / CORPUS_FILE
    if not path.is_file():
        raise UserError(
            f"no {CORPUS_FILE} in {root}: this is not a coat-pipe corpus. "
            "Build one with `coat-pipe shard --manifest FILE.jsonl --out DIR` or `coat-pipe synth --out DIR`."
        )
    try:
        raw = json.loads(path.read_text())
        shards = tuple(ShardInfo(s["name"], int(s["samples"]), float(s["seconds"])) for s in raw["shards"])
        info = CorpusInfo(root, int(raw["sample_rate"]), shards, raw.get("created_by", ""))
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a valid corpus file ({type(e).__name__}: {e})") from None
    for s in shards:  # a shard must be a tar inside the corpus: a listed "../x.tar" would read elsewhere
        name = PurePosixPath(s.name)
        if name.is_absolute() or ".." in name.parts or name.suffix != ".tar" or not s.name.strip():
            raise UserError(f"{path}: shard name {s.name!r} is not a .tar file inside the corpus folder")
    if not shards:
        raise UserError(f"{path} lists no shards: there is nothing to check, extract or train on")
    missing = [s.name for s in shards if not info.tar_path(s).is_file()]
    if missing:
        raise UserError(f"{path} lists shards that do not exist: {', '.join(missing[:5])}")
    return info


def refuse_non_empty(folder: Path, but: tuple[str, ...] = ()) -> None:
    """A folder a command creates its output in must be new or empty (of anything but the names in `but`):
    nothing in it is overwritten."""
    if (not is_remote(folder) and folder.is_symlink()) or (folder.exists() and not folder.is_dir()):
        raise UserError(f"--out {folder} is not a folder")
    held = sorted(p.name for p in folder.iterdir() if p.name not in but) if folder.is_dir() else []
    if held:
        raise UserError(f"--out {folder} is not empty (holds {', '.join(held[:4])}); choose a new or empty folder")


def write_new_file(path: Path, text: str) -> None:
    """Create `path` with `text`; never follows a link planted there, never replaces an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_corpus(root: Path, sample_rate: int, shards: list[ShardInfo], created_by: str) -> None:
    payload = {
        "sample_rate": sample_rate,
        "samples": sum(s.samples for s in shards),
        "seconds": round(sum(s.seconds for s in shards), 3),
        "shards": [asdict(s) for s in shards],
        "created_by": created_by,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    replace_file(root / CORPUS_FILE, json.dumps(payload, indent=1).encode())


def safe_key(text: str) -> str:
    """A WebDataset key from any text: no dots, no slashes, nothing a shell or URL would mangle."""
    return _UNSAFE_KEY_CHARS.sub("_", text).strip("_") or "clip"


def member_key(name: str) -> tuple[str, str] | None:
    """(key, extension) of a tar member name, by webdataset's own rule (`base_plus_ext`: the key ends at
    the first dot of the basename, extensions lower-cased), or None for a name without an extension."""
    key, ext = base_plus_ext(name)
    return None if key is None else (key, ext.lower())


class TarIndex:
    """Where each sample's members lie in one tar, from its headers alone (no member data is read).

    `keys[i]` is sample i's `__key__` and `members[i]` maps its extensions to (byte offset, size), so a
    sample is read by seeking. Python's `tarfile` treats a damaged header in mid-archive as the end of
    the archive; the index refuses such a tar instead of silently serving the samples before it.
    """

    def __init__(self, tar: Path) -> None:
        self.tar = tar
        self.keys: list[str] = []
        self.members: list[dict[str, tuple[int, int]]] = []
        self._file: Any = None  # kept open for `read`
        remote = is_remote(self.tar)
        f = None
        try:
            # In an object store the whole tar comes in one GET and stays in memory while the index is
            # open: per-sample range requests would cost a round trip per clip (docs/PERFORMANCE.md).
            f = self.tar.open("rb", cache_type="all") if remote else self.tar.open("rb")
            with tarfile.open(fileobj=f, mode="r:") as archive:
                for member in archive:
                    split = member_key(member.name) if member.isreg() else None
                    if split is None:
                        continue
                    key, ext = split
                    if not self.keys or self.keys[-1] != key:
                        self.keys.append(key)
                        self.members.append({})
                    self.members[-1][ext] = (member.offset_data, member.size)
                end = archive.offset  # where tarfile stopped: the end-of-archive blocks, or a bad header
            damaged = _nonzero_after(f, end)
        except (tarfile.TarError, OSError) as e:
            if f is not None:
                f.close()
            raise UserError(f"{self.tar}: cannot read the tar ({e})") from None
        if remote:
            self._file = f
        else:
            f.close()
        if damaged:
            raise UserError(
                f"{self.tar}: damaged tar header at byte {end} ({len(self.keys)} samples readable before it); "
                "restore the shard from its source"
            )

    def read(self, index: int) -> dict[str, bytes]:
        """Sample `index`'s entries by extension (its key is `keys[index]`)."""
        if self._file is None:
            self._file = self.tar.open("rb")
        sample = {}
        for ext, (offset, size) in self.members[index].items():
            self._file.seek(offset)
            sample[ext] = self._file.read(size)
        return sample

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_file": None}  # an open file does not travel to another process


def _nonzero_after(f: Any, offset: int, block: int = 1 << 16) -> bool:
    """Whether any byte of the open file from `offset` on is not zero (a tar ends in zero blocks and padding)."""
    f.seek(offset)
    while chunk := f.read(block):
        if chunk.count(0) != len(chunk):
            return True
    return False


def read_tar_keys(tar: Path) -> list[str]:
    """The `__key__` order of a shard, read from the tar headers alone."""
    return TarIndex(tar).keys


def iter_tar_samples(tar: Path) -> Iterator[dict[str, Any]]:
    """Samples of one shard in order, as webdataset groups them: {"__key__", "flac": bytes, "json": bytes}."""
    with tar.open("rb") as stream:
        files = ({**f, "__url__": str(tar)} for f in tar_file_iterator(stream))
        yield from group_by_keys(files)


ROLES = ("system", "user", "assistant")


def conversation_turns(messages: Any) -> tuple[str, str]:
    """(question, answer) of a sample's conversation: the first user turn and the assistant turn after it.

    Raises ValueError saying what is wrong: not a list of {"role", "content"} turns with string contents
    and known roles, no user turn, or no assistant turn after it.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list of {"role", "content"} turns')
    for number, turn in enumerate(messages, 1):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            raise ValueError(f'turn {number} must be {{"role": one of {"/".join(ROLES)}, "content": a string}}')
    roles = [turn["role"] for turn in messages]
    if "user" not in roles:
        raise ValueError("the conversation has no user turn")
    first_user = roles.index("user")
    if "assistant" in roles[:first_user]:
        raise ValueError("an assistant turn comes before the first user turn")
    if "assistant" not in roles[first_user:]:
        raise ValueError("the conversation has no assistant turn after the user turn")
    return messages[first_user]["content"], messages[roles.index("assistant", first_user)]["content"]


def sample_meta(entries: dict[str, Any], where: str) -> dict[str, Any]:
    """A tar sample's json entry, checked: an object whose conversation `conversation_turns` accepts.
    Raises ValueError naming `where` (the tar and key) and the reason."""
    found = _fields(entries, "json")
    if not found:
        raise ValueError(f"{where}: the sample has no json entry")
    if len(found) > 1:
        raise ValueError(f"{where}: the sample has {len(found)} json entries ({', '.join(found)}); expected one")
    raw = entries[found[0]]
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: the json entry is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: the json entry is not an object")
    try:
        conversation_turns(meta.get("messages"))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return meta


def _fields(sample: dict[str, Any], ext: str) -> list[str]:
    """The sample's fields of one format. WebDataset's key ends at the first dot of a member's basename, so
    `KEY.take2.flac` is field `take2.flac` of sample KEY: a field's format is its last dotted part."""
    return [name for name in sample if not name.startswith("__") and name.rpartition(".")[2] == ext]


def sample_audio(sample: dict[str, Any]) -> tuple[bytes, str] | None:
    """The audio bytes of a sample and their format, or None when it has none (first format in
    AUDIO_EXTENSIONS order; `flac` before `take2.flac`)."""
    for ext in AUDIO_EXTENSIONS:
        found = sorted(_fields(sample, ext), key=lambda name: (name != ext, name))
        if found:
            return sample[found[0]], ext
    return None


@dataclass
class CorpusWriter:
    """Writes samples into `NAME-000000.tar …` of at most `shard_size` samples, then `corpus.json`.

    Each tar is written under a temporary name and renamed when full, so a killed run never
    leaves a truncated shard that looks complete. With `appending_to` (the corpus as it is), new tars
    are numbered after every `NAME-*.tar` already in the folder, none is ever replaced, and
    `corpus.json` (old shards, then new) is rewritten whole, last.
    """

    root: Path
    sample_rate: int
    shard_size: int = 1000
    name: str = "train"
    created_by: str = "coat-pipe"
    appending_to: CorpusInfo | None = None
    shards: list[ShardInfo] = field(default_factory=list)
    _writer: wds.TarWriter | None = None
    _local: Path | None = None
    _count: int = 0
    _seconds: float = 0.0
    _first: int = 0  # the number of this run's first tar

    def __enter__(self) -> CorpusWriter:
        self.root = corpus_path(self.root)
        check_reachable(self.root)
        with storage_errors(self.root):
            if self.appending_to is None:
                refuse_non_empty(self.root, but=(REJECTED_FILE,))
            else:
                self._first = next_shard_number(self.root, self.name)
            self.root.mkdir(parents=True, exist_ok=True)
        # In an object store each tar is written on local disk, then uploaded whole once it is full.
        self._local = Path(tempfile.mkdtemp(prefix="coat-shards-")) if is_remote(self.root) else self.root
        return self

    def _tar_name(self) -> str:
        return f"{self.name}-{self._first + len(self.shards):06d}.tar"

    def write(self, key: str, flac: bytes, meta: dict[str, Any]) -> None:
        if self._writer is None:
            # A fixed mtime: the same inputs give byte-identical tars.
            self._writer = wds.TarWriter(str(self._local / f".{self._tar_name()}.tmp"), encoder=False, mtime=0.0)
        self._writer.write({"__key__": key, "flac": flac, "json": json.dumps(meta).encode()})
        self._count += 1
        self._seconds += float(meta["duration"])
        if self._count >= self.shard_size:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        name = self._tar_name()
        if (self.root / name).exists():  # only an append can meet one: another writer in the same folder
            raise UserError(f"{self.root / name} appeared while this run was writing it; nothing was replaced")
        if is_remote(self.root):
            with storage_errors(self.root):
                self.root.fs.put_file(str(self._local / f".{name}.tmp"), (self.root / name).path)
            (self._local / f".{name}.tmp").unlink()
        else:
            os.replace(self.root / f".{name}.tmp", self.root / name)
        self.shards.append(ShardInfo(name, self._count, round(self._seconds, 3)))
        self._writer, self._count, self._seconds = None, 0, 0.0

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:  # what this run wrote goes: a rerun starts from the folder as it was
            if self._writer is not None:
                self._writer.close()
                (self._local / f".{self._tar_name()}.tmp").unlink(missing_ok=True)
            for shard in self.shards:
                with contextlib.suppress(OSError):
                    (self.root / shard.name).unlink()
            if self._local != self.root:
                shutil.rmtree(self._local, ignore_errors=True)
            return
        self._close_shard()
        if not self.shards:  # nothing written: a corpus of no shards is not written (nor one rewritten)
            return
        before = self.appending_to
        shards = [*before.shards, *self.shards] if before else self.shards
        write_corpus(self.root, self.sample_rate, shards, before.created_by if before else self.created_by)
        if self._local != self.root:
            shutil.rmtree(self._local, ignore_errors=True)


def next_shard_number(root: Path, name: str) -> int:
    """One past the highest `NAME-NNNNNN.tar` in the folder, listed in corpus.json or not (a killed append
    leaves tars it never listed): an appended tar never takes a name that is there."""
    pattern = re.compile(rf"{re.escape(name)}-(\d+)\.tar")
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := pattern.fullmatch(p.name))]
    return max(numbers, default=-1) + 1
