"""The corpus contract: WebDataset tar shards of (flac, json) samples and the `corpus.json` that lists them."""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_iterator

from pipeline.errors import UserError

CORPUS_FILE = "corpus.json"
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


def read_corpus(root: Path) -> CorpusInfo:
    """Read `root/corpus.json`, with an error that says how to make one when it is missing or broken."""
    path = Path(root) / CORPUS_FILE
    if not path.is_file():
        raise UserError(
            f"no {CORPUS_FILE} in {root}: this is not a coat-pipe corpus. "
            "Build one with `coat-pipe shard --manifest FILE.jsonl --out DIR` or `coat-pipe synth --out DIR`."
        )
    try:
        raw = json.loads(path.read_text())
        shards = tuple(ShardInfo(s["name"], int(s["samples"]), float(s["seconds"])) for s in raw["shards"])
        info = CorpusInfo(Path(root), int(raw["sample_rate"]), shards, raw.get("created_by", ""))
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a valid corpus file ({type(e).__name__}: {e})") from None
    missing = [s.name for s in shards if not info.tar_path(s).is_file()]
    if missing:
        raise UserError(f"{path} lists shards that do not exist: {', '.join(missing[:5])}")
    return info


def write_corpus(root: Path, sample_rate: int, shards: list[ShardInfo], created_by: str) -> None:
    payload = {
        "sample_rate": sample_rate,
        "samples": sum(s.samples for s in shards),
        "seconds": round(sum(s.seconds for s in shards), 3),
        "shards": [asdict(s) for s in shards],
        "created_by": created_by,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp = root / f".{CORPUS_FILE}.tmp"
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, root / CORPUS_FILE)


def safe_key(text: str) -> str:
    """A WebDataset key from any text: no dots, no slashes, nothing a shell or URL would mangle."""
    return _UNSAFE_KEY_CHARS.sub("_", text).strip("_") or "clip"


def read_tar_keys(tar: Path) -> list[str]:
    """The `__key__` order of a shard, read from the tar headers alone (no member data is read)."""
    keys: list[str] = []
    try:
        with tarfile.open(tar, "r:") as archive:
            for member in archive:
                if not member.isreg() or "." not in member.name:
                    continue
                key = member.name.split(".", 1)[0]
                if not keys or keys[-1] != key:
                    keys.append(key)
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{tar}: cannot read the tar ({e})") from None
    return keys


def iter_tar_samples(tar: Path) -> Iterator[dict[str, Any]]:
    """Samples of one shard in order, as webdataset groups them: {"__key__", "flac": bytes, "json": bytes}."""
    with open(tar, "rb") as stream:
        files = ({**f, "__url__": str(tar)} for f in tar_file_iterator(stream))
        yield from group_by_keys(files)


def sample_audio(sample: dict[str, Any]) -> tuple[bytes, str] | None:
    """The audio bytes of a sample and their format, or None when it has none."""
    for ext in AUDIO_EXTENSIONS:
        if ext in sample:
            return sample[ext], ext
    return None


@dataclass
class CorpusWriter:
    """Writes samples into `NAME-000000.tar …` of at most `shard_size` samples, then `corpus.json`.

    Each tar is written under a temporary name and renamed when full, so a killed run never
    leaves a truncated shard that looks complete.
    """

    root: Path
    sample_rate: int
    shard_size: int = 1000
    name: str = "train"
    created_by: str = "coat-pipe"
    shards: list[ShardInfo] = field(default_factory=list)
    _writer: wds.TarWriter | None = None
    _count: int = 0
    _seconds: float = 0.0

    def __enter__(self) -> CorpusWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def _tar_name(self) -> str:
        return f"{self.name}-{len(self.shards):06d}.tar"

    def write(self, key: str, flac: bytes, meta: dict[str, Any]) -> None:
        if self._writer is None:
            # A fixed mtime: the same inputs give byte-identical tars.
            self._writer = wds.TarWriter(str(self.root / f".{self._tar_name()}.tmp"), encoder=False, mtime=0.0)
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
        os.replace(self.root / f".{name}.tmp", self.root / name)
        self.shards.append(ShardInfo(name, self._count, round(self._seconds, 3)))
        self._writer, self._count, self._seconds = None, 0, 0.0

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            if self._writer is not None:
                self._writer.close()
            return
        self._close_shard()
        write_corpus(self.root, self.sample_rate, self.shards, self.created_by)
