"""`coat-pipe shard`: audio on disk (a JSONL manifest or a folder) into WebDataset tar shards.

Each file is decoded with soundfile (wav, flac, ogg, mp3), mixed to mono, resampled with soxr and
stored as 16-bit FLAC. A file that cannot be used is written to `rejected.jsonl` with its reason
and counted; the run goes on.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from stages.audio import AudioError, encode_flac, read_audio_span, resample
from stages.progress import audio_progress
from store_schema.corpus import (
    REJECTED_FILE,
    CorpusInfo,
    CorpusWriter,
    conversation_turns,
    read_corpus,
    read_tar_keys,
    refuse_non_empty,
    safe_key,
    write_new_file,
)
from store_schema.errors import UserError
from store_schema.location import check_reachable, corpus_path, is_remote, replace_file, storage_errors

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
ASR_QUESTION = "Transcribe the speech in the audio."
MAX_SECONDS = 1200.0  # default --max-seconds: longer files are refused (20 min; LALMs hear 30 s windows)
STREAM_BATCH = 256  # source rows read ahead of the decoding workers
MIN_RATE, MAX_RATE = 1000, 768000  # Hz: a header outside this range is damaged, not audio


@dataclass(frozen=True)
class ManifestEntry:
    audio: Path | bytes  # absolute path of the audio file, or the encoded file's bytes (a dataset's column)
    origin: str  # where the entry came from, for messages: "manifest.jsonl:12" or the file path
    messages: list[dict[str, str]] = field(default_factory=list)
    task: str = ""
    key: str | None = None  # requested key; made safe and unique when written
    source: str = ""
    offset: float = 0.0  # seconds into the file where the clip starts (a Lhotse cut inside a recording)
    duration: float | None = None  # seconds of the clip; None: to the end of the file
    channel: int | None = None  # the one channel to keep; None: mix all channels to mono

    @property
    def name(self) -> str:
        """The audio as messages name it: its path, or where its bytes came from."""
        return str(self.audio) if isinstance(self.audio, Path) else f"{self.origin} (audio bytes)"


@dataclass(frozen=True)
class Rejected:
    """A source row that cannot become a sample, and why."""

    origin: str  # "FILE:ROW"
    audio: str
    reason: str

    def as_row(self) -> dict[str, str]:
        return {"origin": self.origin, "audio": self.audio, "reason": self.reason}


@dataclass
class ShardSummary:
    written: int = 0
    seconds: float = 0.0
    rejected: list[dict[str, str]] = field(default_factory=list)
    renamed_keys: int = 0  # keys that had to change to be safe or unique
    resampled: int = 0
    downmixed: int = 0
    shards: int = 0
    multi_turn: int = 0  # samples whose conversation goes on after its first answer (stored whole)


def read_manifest(path: Path, allow_outside: bool = False) -> tuple[list[ManifestEntry], list[dict[str, str]]]:
    """Entries of a JSONL manifest (audio paths relative to it) and the lines that could not be used; an audio
    path outside the manifest's folder is one of those unless `allow_outside` (as for every other source)."""
    if not path.is_file():
        raise UserError(f"manifest {path} does not exist")
    entries, rejected = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as e:
        raise UserError(f"{path}: cannot be read as UTF-8 text ({type(e).__name__}: {e})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        origin = f"{path}:{number}"
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("audio"), str):
                raise ValueError('expected an object with an "audio" path')
            messages = row.get("messages")
            conversation_turns(messages)  # a question and an answer, or the reason there are none
            if row.get("key") is not None and not isinstance(row["key"], str):
                raise ValueError(f'"key" must be a string, got {json.dumps(row["key"])}')
        except (ValueError, RecursionError) as e:
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            rejected.append({"origin": origin, "audio": "", "reason": f"bad manifest line: {reason}"})
            continue
        audio = (path.parent / row["audio"]).resolve()
        if not allow_outside and path.parent.resolve() not in audio.parents:
            reason = f"audio path {row['audio']!r} lies outside {path.parent} (pass --allow-outside-audio to accept it)"
            rejected.append({"origin": origin, "audio": str(audio), "reason": reason})
            continue
        entries.append(
            ManifestEntry(
                audio, origin, messages, str(row.get("task", "")), row.get("key"), str(row.get("source", row["audio"]))
            )
        )
    return entries, rejected


def scan_audio_dir(root: Path) -> tuple[list[ManifestEntry], list[dict[str, str]]]:
    """Every audio file under `root`, sorted, as an ASR sample with the `NAME.txt` beside `NAME.wav` as
    its transcript; files without one are returned as rejected (a sample needs a question and an answer)."""
    if not root.is_dir():
        raise UserError(f"audio folder {root} does not exist")
    entries, rejected = [], []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        relative = path.relative_to(root)
        transcript = path.with_suffix(".txt")
        if not transcript.is_file():
            reason = f"no transcript {transcript.name} beside it (a sample needs a question and an answer)"
            rejected.append({"origin": str(path), "audio": str(path), "reason": reason})
            continue
        messages = [
            {"role": "user", "content": ASR_QUESTION},
            {"role": "assistant", "content": transcript.read_text().strip()},
        ]
        entries.append(
            ManifestEntry(path.resolve(), str(path), messages, "asr", str(relative.with_suffix("")), str(relative))
        )
    return entries, rejected


def prepare_clip(entry: ManifestEntry, sample_rate: int, max_seconds: float = MAX_SECONDS) -> dict[str, Any]:
    """Decode, downmix, resample and encode one entry (runs in a worker process).

    The header is read first: an implausible sample rate or a duration over `max_seconds` is refused
    before anything is decoded (a 40 kB file can declare hours of audio)."""
    name = entry.name
    if isinstance(entry.audio, Path) and not entry.audio.is_file():
        return {"error": f"{name}: no such file"}
    opened = str(entry.audio) if isinstance(entry.audio, Path) else io.BytesIO(entry.audio)
    try:
        declared = sf.info(opened)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError):
        declared = None  # the read below names the reason
    if declared is not None:
        if not MIN_RATE <= declared.samplerate <= MAX_RATE:
            return {"error": f"{name}: implausible sample rate {declared.samplerate} Hz in its header"}
        span = entry.duration if entry.duration is not None else declared.duration - entry.offset
        if span > max_seconds:
            return {"error": f"{name}: {span:.0f} s is longer than --max-seconds {max_seconds:g}"}
        if entry.offset + (entry.duration or 0.0) > declared.duration + 0.01:
            return {
                "error": f"{name}: the clip ends at {entry.offset + (entry.duration or 0):.2f} s, past the "
                f"file's {declared.duration:.2f} s"
            }
    if isinstance(opened, io.BytesIO):
        opened.seek(0)
    try:
        wave, rate, channels = read_audio_span(opened, name, entry.offset, entry.duration, entry.channel)
    except AudioError as e:
        return {"error": str(e)}
    if wave.size == 0:
        return {"error": f"{name}: the file holds no samples"}
    if wave.size / rate > max_seconds:
        return {"error": f"{name}: {wave.size / rate:.0f} s is longer than --max-seconds {max_seconds:g}"}
    if not np.isfinite(wave).all():
        return {"error": f"{name}: NaN or Inf samples (FLAC cannot store them)"}
    wave = resample(wave, rate, sample_rate)
    if wave.size == 0:
        return {"error": f"{name}: no samples left at {sample_rate} Hz"}
    return {
        "flac": encode_flac(wave, sample_rate),
        "seconds": wave.size / sample_rate,
        "resampled": rate != sample_rate,
        "downmixed": channels > 1 and entry.channel is None,
    }


def _prepare(args: tuple[ManifestEntry, int, float]) -> dict[str, Any]:
    return prepare_clip(*args)


# What a malformed source raises while it is read (deep nesting, another encoding, a value of the wrong type
# where a reader indexes it, a damaged Arrow or parquet file): one line naming the source, never a traceback.
MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, UnicodeError, OSError)


def _read_rows(rows: Iterable[ManifestEntry | Rejected], where: str) -> Iterator[ManifestEntry | Rejected]:
    iterator = iter(rows)
    while True:
        try:
            row = next(iterator)
        except StopIteration:
            return
        except UserError:
            raise
        except MALFORMED as e:
            reason = "nested too deeply" if isinstance(e, RecursionError) else f"{type(e).__name__}: {e}"
            raise UserError(f"{where or 'the source'}: cannot be read ({reason[:300]})") from None
        yield row


def _batches(rows: Iterable[ManifestEntry | Rejected], size: int) -> Iterator[list[ManifestEntry | Rejected]]:
    batch: list[ManifestEntry | Rejected] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def build_shards(
    entries: Iterable[ManifestEntry | Rejected],
    out: Path,
    sample_rate: int | None = None,
    shard_size: int = 1000,
    name: str = "train",
    workers: int = 2,
    rejected: list[dict[str, str]] | None = None,
    progress: bool = True,
    max_seconds: float = MAX_SECONDS,
    append: bool = False,
    source: str = "",
) -> ShardSummary:
    """Write `entries` into `out/NAME-000000.tar …`, `out/rejected.jsonl`, then `out/corpus.json`.

    `entries` may be a stream (a source's rows, with its rejections among them): it is read a batch at a
    time, so memory stays flat in the number of rows. `out` must be new or empty: nothing there is
    overwritten, and no link planted there is written through. With `append`, `out` must hold a corpus:
    the new tars are numbered after the folder's, their keys are made unique against every key already
    there, rejections are added to its rejected.jsonl, and corpus.json is rewritten (atomically) last.
    `sample_rate` defaults to 16000, or to the corpus's when appending (another is refused). A source that
    cannot be read ends the run with one line naming `source`, and the tars this run wrote are removed."""
    if safe_key(name) != name:
        raise UserError(f"--name {name!r}: a shard name prefix holds only letters, digits, '_' and '-'")
    out = corpus_path(out)
    check_reachable(out)
    before: CorpusInfo | None = None
    seen: set[str] = set()
    with storage_errors(out):
        if append:
            before = read_corpus(out)
            if sample_rate not in (None, before.sample_rate):
                raise UserError(f"--sample-rate {sample_rate}: {out} holds {before.sample_rate} Hz audio")
            for shard in before.shards:  # keys name a clip across the corpus: an added one never repeats them
                seen.update(read_tar_keys(before.tar_path(shard)))
        else:
            if (out / "corpus.json").exists():
                raise UserError(f"{out} already holds a corpus; add to it with --append, or choose another --out")
            refuse_non_empty(out, but=(REJECTED_FILE,))  # the reasons a run that wrote nothing left are replaced
    sample_rate = before.sample_rate if before else (sample_rate or 16000)
    summary = ShardSummary(rejected=list(rejected or []))
    total = len(entries) if isinstance(entries, Sized) else None
    with (
        CorpusWriter(out, sample_rate, shard_size, name, "coat-pipe shard", appending_to=before) as writer,
        get_context("fork").Pool(max(1, workers)) as pool,
        audio_progress(disable=not progress) as bar,
    ):
        task = bar.add_task("shard", total=total, audio_s=0.0)
        for batch in _batches(_read_rows(entries, source), STREAM_BATCH):
            usable = [row for row in batch if isinstance(row, ManifestEntry)]
            summary.rejected.extend(row.as_row() for row in batch if isinstance(row, Rejected))
            bar.advance(task, len(batch) - len(usable))
            jobs = [(entry, sample_rate, max_seconds) for entry in usable]
            for entry, result in zip(usable, pool.imap(_prepare, jobs, chunksize=4), strict=True):
                bar.advance(task)
                if "error" in result:
                    summary.rejected.append({"origin": entry.origin, "audio": entry.name, "reason": result["error"]})
                    continue
                wanted = entry.key or (entry.audio.stem if isinstance(entry.audio, Path) else "clip")
                key = base = safe_key(wanted)
                suffix = 1
                while key in seen:
                    suffix += 1
                    key = f"{base}_{suffix}"
                seen.add(key)
                summary.renamed_keys += key != wanted
                meta = {
                    "messages": entry.messages,
                    "task": entry.task,
                    "duration": round(result["seconds"], 4),
                    "source": entry.source,
                }
                writer.write(key, result["flac"], meta)
                summary.written += 1
                summary.seconds += result["seconds"]
                summary.resampled += result["resampled"]
                summary.downmixed += result["downmixed"]
                summary.multi_turn += sum(m.get("role") == "assistant" for m in entry.messages) > 1
                bar.update(task, audio_s=summary.seconds)
        _write_rejected(out, summary.rejected, appending=before is not None)
    summary.shards = len(writer.shards)
    if not summary.written:
        example = (
            f" (e.g. {summary.rejected[0]['origin']}: {summary.rejected[0]['reason']})" if summary.rejected else ""
        )
        raise UserError(
            f"no usable sample in {source or 'the source'}: {len(summary.rejected)} row(s) rejected{example}; every "
            f"reason is in {out}/{REJECTED_FILE}. Nothing else was written{'' if before else ' (no corpus.json)'}."
        )
    return summary


def _write_rejected(out: Path, rejected: list[dict[str, str]], appending: bool) -> None:
    """rejected.jsonl, before corpus.json: a new corpus's file is created; an append's is extended."""
    rows = "".join(json.dumps(row) + "\n" for row in rejected)
    path = out / "rejected.jsonl"
    with storage_errors(out):
        if appending:
            replace_file(path, (path.read_text() if path.is_file() else "").encode() + rows.encode())
        elif is_remote(out) or path.is_file():  # an empty folder's, or one a run that wrote nothing left
            replace_file(path, rows.encode())
        else:
            write_new_file(path, rows)
