"""The shapes audio instruction data already comes in, read row by row for `coat-pipe shard --from`.

Each reader yields a `ManifestEntry` per usable row and a `Rejected` (origin "FILE:ROW" and the reason)
per row that is not: nothing is dropped silently, and nothing is held in memory beyond one batch of rows.

  chat     LLaMA-Factory / ms-swift conversations, JSON or JSONL: {"messages": [...], "audios": [path]}, or
           ShareGPT's {"conversations": [{"from": "human", "value": ...}]}; a folder with dataset_info.json
           and --dataset NAME takes that dataset's file, formatting, columns and tags
  hf       a Hugging Face dataset written by `save_to_disk` (its Arrow files) or parquet files, read with
           pyarrow: the audio column's bytes (or path) and a messages column or question/answer columns
  lhotse   a Lhotse CutSet (MonoCut: one sample per cut, its supervisions' text as an ASR answer), or a
           RecordingSet with --supervisions (one sample per supervision segment)
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.corpus.shard import ASR_QUESTION, ManifestEntry, Rejected
from store_schema.corpus import conversation_turns
from store_schema.errors import UserError

AUDIO_PLACEHOLDER = "<audio>"
ROWS_PER_BATCH = 512  # rows read from a parquet or Arrow file at a time


@dataclass(frozen=True)
class ChatColumns:
    """LLaMA-Factory's names for one dataset (dataset_info.json); the defaults read ms-swift's shape too."""

    messages: str = "messages"
    audios: str = "audios"
    system: str | None = "system"
    role: str = "role"
    content: str = "content"
    user: str = "user"
    assistant: str = "assistant"
    system_role: str = "system"


SHAREGPT = ChatColumns(messages="conversations", role="from", content="value", user="human", assistant="gpt")

Row = ManifestEntry | Rejected


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _audio_path(value: str, root: Path, allow_outside: bool) -> Path | str:
    """The resolved path, or the reason it cannot be used."""
    path = (root / value).resolve()
    if not allow_outside and not _inside(path, root.resolve()):
        return f"audio path {value!r} lies outside {root} (pass --allow-outside-audio to accept it)"
    return path


def chat_messages(row: dict[str, Any], columns: ChatColumns) -> tuple[list[dict[str, str]], int]:
    """A row's conversation as {"role", "content"} turns with the audio placeholders removed from the user
    turns, and how many placeholders there were. ValueError says what is wrong with the row."""
    turns = row.get(columns.messages)
    if not isinstance(turns, list) or not turns:
        raise ValueError(f'no "{columns.messages}" list of turns')
    roles = {columns.user: "user", columns.assistant: "assistant", columns.system_role: "system"}
    messages, placeholders = [], 0
    system = row.get(columns.system) if columns.system else None
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    for number, turn in enumerate(turns, 1):
        if not isinstance(turn, dict) or turn.get(columns.role) not in roles:
            raise ValueError(f"turn {number} has no known {columns.role!r} ({', '.join(roles)})")
        content = turn.get(columns.content)
        if not isinstance(content, str):
            raise ValueError(f"turn {number}'s {columns.content!r} is not a string")
        role = roles[turn[columns.role]]
        if role == "user":
            placeholders += content.count(AUDIO_PLACEHOLDER)
            content = " ".join(content.replace(AUDIO_PLACEHOLDER, " ").split())
        messages.append({"role": role, "content": content})
    conversation_turns(messages)  # a user turn and an assistant turn after it
    return messages, placeholders


def _chat_entry(row: Any, origin: str, root: Path, columns: ChatColumns, allow_outside: bool, default_key: str) -> Row:
    """One row as an entry or a rejection."""
    if not isinstance(row, dict):
        return Rejected(origin, "", "the row is not a JSON object")
    try:
        messages, placeholders = chat_messages(row, columns)
    except ValueError as e:
        return Rejected(origin, "", f"bad conversation: {e}")
    audios = row.get(columns.audios, [])
    audios = [audios] if isinstance(audios, str) else audios
    if not isinstance(audios, list) or not all(isinstance(a, str) for a in audios):
        return Rejected(origin, "", f'"{columns.audios}" must be a list of paths')
    if not audios:
        what = "an <audio> placeholder but no audio" if placeholders else "no audio"
        return Rejected(origin, "", f"the row has {what}")
    if len(audios) > 1:
        return Rejected(origin, ", ".join(audios), f"the row has {len(audios)} audios; a sample holds one")
    if placeholders > 1:
        return Rejected(origin, audios[0], f"{placeholders} <audio> placeholders for one audio")
    path = _audio_path(audios[0], root, allow_outside)
    if isinstance(path, str):
        return Rejected(origin, audios[0], path)
    key = row.get("id") if isinstance(row.get("id"), str) else default_key
    return ManifestEntry(path, origin, messages, str(row.get("task", "")), key, origin)


def _json_rows(path: Path) -> Iterator[tuple[int, Any | ValueError]]:
    """(row number, row) of a JSONL file line by line, or of a JSON list (read whole: JSON has no streaming)."""
    with open(path, encoding="utf-8") as f:
        first = f.read(1)
        while first and first.isspace():
            first = f.read(1)
        f.seek(0)
        if first == "[":
            try:
                rows = json.load(f)
            except ValueError as e:
                raise UserError(f"{path}: not valid JSON ({e})") from None
            yield from enumerate(rows, 1)
            return
        yield from _json_lines(f)


def _json_lines(lines: Iterator[str]) -> Iterator[tuple[int, Any | ValueError]]:
    """(line number, parsed value or the parse error) of each non-blank line."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except ValueError as e:
                yield number, e
            except RecursionError:
                yield number, ValueError("nested too deeply")


def read_chat(
    source: Path, dataset: str | None = None, sharegpt: bool = False, allow_outside: bool = False
) -> Iterator[Row]:
    """LLaMA-Factory / ms-swift conversation files; with `dataset`, `source` is the folder of dataset_info.json."""
    columns = SHAREGPT if sharegpt else ChatColumns()
    if dataset is not None:
        source, columns = _dataset_info(source, dataset)
    if not source.is_file():
        raise UserError(f"{source}: no such conversation file")
    root = source.parent
    for number, row in _json_rows(source):
        origin = f"{source}:{number}"
        if isinstance(row, ValueError):
            yield Rejected(origin, "", f"bad JSON line: {row}")
            continue
        yield _chat_entry(row, origin, root, columns, allow_outside, f"{source.stem}-{number:06d}")


def _dataset_info(folder: Path, dataset: str) -> tuple[Path, ChatColumns]:
    info_file = folder / "dataset_info.json"
    try:
        datasets = json.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"{info_file}: cannot read it ({type(e).__name__})") from None
    if not isinstance(datasets, dict):
        raise UserError(f"{info_file}: not a mapping of dataset names to their descriptions")
    if dataset not in datasets:
        raise UserError(f"{info_file}: no dataset {dataset!r}")
    info = datasets[dataset]
    if not isinstance(info, dict) or info.get("formatting", "alpaca") != "sharegpt" or "file_name" not in info:
        raise UserError(f"{info_file}: {dataset!r} is not a sharegpt-formatted file dataset (the shape with audios)")
    base = SHAREGPT
    cols, tags = info.get("columns", {}), info.get("tags", {})
    names = (
        [info["file_name"], *cols.values(), *tags.values()] if isinstance(cols, dict) and isinstance(tags, dict) else []
    )
    if not names or not all(isinstance(n, str) for n in names):
        raise UserError(f"{info_file}: {dataset!r}: file_name, columns and tags must be names (strings)")
    file = (folder / info["file_name"]).resolve()
    if not _inside(file, folder.resolve()):
        raise UserError(f"{info_file}: {dataset!r}'s file_name {info['file_name']!r} lies outside {folder}")
    columns = ChatColumns(
        messages=cols.get("messages", base.messages),
        audios=cols.get("audios", base.audios),
        system=cols.get("system", base.system),
        role=tags.get("role_tag", base.role),
        content=tags.get("content_tag", base.content),
        user=tags.get("user_tag", base.user),
        assistant=tags.get("assistant_tag", base.assistant),
        system_role=tags.get("system_tag", base.system_role),
    )
    return file, columns


# --- Hugging Face datasets: Arrow (save_to_disk) or parquet, through pyarrow alone ---------------------


def _record_batches(source: Path) -> Iterator[tuple[Path, Any]]:
    """(file, pyarrow RecordBatch) of a save_to_disk folder's Arrow files or of parquet files, in order."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("shard --from hf reads datasets with pyarrow: pip install 'coat-pipe[hf]'") from None

    if source.is_dir() and (source / "state.json").is_file():
        state_file = source / "state.json"
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            names = [str(d["filename"]) for d in state["_data_files"]]
        except (OSError, ValueError, RecursionError, KeyError, TypeError) as e:
            raise UserError(f"{state_file}: not a save_to_disk state ({type(e).__name__}: {e})") from None
        paths = [(source / name).resolve() for name in names]
        for name, path in zip(names, paths):  # a state.json naming "../x.arrow" would read elsewhere
            if not _inside(path, source.resolve()):
                raise UserError(f"{state_file}: data file {name!r} lies outside {source}")
        for path in paths:
            with pa.memory_map(str(path)) as stream:
                reader = pa.ipc.open_stream(stream)
                for batch in reader:
                    yield path, batch
        return
    files = sorted(source.glob("**/*.parquet")) if source.is_dir() else [source]
    if not files or not all(f.suffix == ".parquet" for f in files):
        raise UserError(f"{source}: neither a save_to_disk folder (state.json) nor parquet files")
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROWS_PER_BATCH):
            yield path, batch


def _hf_audio(value: Any, root: Path, allow_outside: bool) -> Path | bytes | str:
    """Audio bytes, a path, or the reason there is neither. The library's own decoding is never used."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, bytes | bytearray) and value:
        return bytes(value)
    if isinstance(value, str) and value:
        return _audio_path(value, root, allow_outside)
    return "the audio column holds neither bytes nor a path"


def read_hf(
    source: Path,
    audio_column: str = "audio",
    messages_column: str | None = None,
    question_column: str | None = None,
    answer_column: str | None = None,
    allow_outside: bool = False,
) -> Iterator[Row]:
    """Rows of a Hugging Face dataset on disk; each row's conversation from `messages_column` (role/content
    turns, placeholders removed) or from `question_column` + `answer_column`."""
    if not source.exists():
        raise UserError(f"{source}: no such dataset folder or parquet file")
    if messages_column is None and (question_column is None or answer_column is None):
        messages_column = "messages"
    root = source if source.is_dir() else source.parent
    counts: dict[Path, int] = {}
    for path, batch in _record_batches(source):
        names = set(batch.schema.names)
        needed = [c for c in (audio_column, messages_column, question_column, answer_column) if c]
        missing = [c for c in needed if c not in names]
        if missing:
            raise UserError(f"{path}: no column {', '.join(missing)} (columns: {', '.join(sorted(names))})")
        for row in batch.to_pylist():
            counts[path] = number = counts.get(path, 0) + 1
            origin = f"{path}:{number}"
            audio = _hf_audio(row[audio_column], root, allow_outside)
            if isinstance(audio, str):
                yield Rejected(origin, "", audio)
                continue
            try:
                if messages_column:
                    messages, _ = chat_messages({"messages": row[messages_column]}, ChatColumns(system=None))
                else:
                    question, answer = row[question_column], row[answer_column]
                    if not isinstance(question, str) or not isinstance(answer, str):
                        raise ValueError("the question and answer must be strings")
                    question = " ".join(question.replace(AUDIO_PLACEHOLDER, " ").split())
                    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
                    conversation_turns(messages)
            except ValueError as e:
                yield Rejected(origin, "", f"bad conversation: {e}")
                continue
            key = row.get("id") if isinstance(row.get("id"), str) else f"{path.stem}-{number:06d}"
            yield ManifestEntry(audio, origin, messages, str(row.get("task", "")), key, origin)


# --- Lhotse: cuts, or recordings + supervisions --------------------------------------------------------


def _jsonl_gz(path: Path) -> Iterator[tuple[int, Any | ValueError]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        yield from _json_lines(f)


def _recording_file(recording: dict[str, Any], root: Path, allow_outside: bool) -> Path | str:
    sources = recording.get("sources")
    if not isinstance(sources, list) or len(sources) != 1 or not isinstance(sources[0], dict):
        return "only recordings with one file source are read (not urls, memory or several files)"
    if sources[0].get("type") != "file" or not isinstance(sources[0].get("source"), str):
        return "only recordings with one file source are read (not urls, memory or several files)"
    return _audio_path(sources[0]["source"], root, allow_outside)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _asr_entry(origin: str, record: dict[str, Any], path: Path, text: str) -> Row:
    """A cut's or segment's sample, or why its id, start, duration or channel cannot be used."""
    key, start, duration, channel = (record.get(k) for k in ("id", "start", "duration", "channel"))
    if not isinstance(key, str | int) or isinstance(key, bool):
        return Rejected(origin, str(path), "no id (a string)")
    if not _number(start) or start < 0:
        return Rejected(origin, str(path), f"start {start!r} is not a time ≥ 0 in seconds")
    if not _number(duration) or duration <= 0:
        return Rejected(origin, str(path), f"duration {duration!r} is not a time > 0 in seconds")
    if isinstance(channel, list) and len(channel) == 1:
        channel = channel[0]
    if channel is not None and (not isinstance(channel, int) or isinstance(channel, bool) or channel < 0):
        # a list of several channels would be mixed from channels it names, not the file's: not read
        return Rejected(origin, str(path), f"channel {channel!r}: one channel index, or none for all of them")
    messages = [{"role": "user", "content": ASR_QUESTION}, {"role": "assistant", "content": text}]
    return ManifestEntry(path, origin, messages, "asr", str(key), origin, float(start), float(duration), channel)


def _supervision_text(supervisions: Any) -> str | None:
    """The supervisions' texts joined, or None when they are not a list of objects."""
    if not isinstance(supervisions, list) or not all(isinstance(s, dict) for s in supervisions):
        return None
    return " ".join(str(s.get("text") or "").strip() for s in supervisions).strip()


def read_lhotse(source: Path, supervisions: Path | None = None, allow_outside: bool = False) -> Iterator[Row]:
    """A CutSet manifest (one sample per MonoCut), or a RecordingSet with its SupervisionSet."""
    if not source.is_file():
        raise UserError(f"{source}: no such Lhotse manifest")
    root = source.parent
    if supervisions is not None:
        yield from _read_segments(source, supervisions, allow_outside)
        return
    for number, cut in _jsonl_gz(source):
        origin = f"{source}:{number}"
        if isinstance(cut, ValueError) or not isinstance(cut, dict):
            yield Rejected(origin, "", f"bad JSON line: {cut}")
            continue
        if "sources" in cut:
            raise UserError(f"{source} is a RecordingSet: pass its SupervisionSet with --supervisions")
        if cut.get("type") != "MonoCut" or not isinstance(cut.get("recording"), dict):
            yield Rejected(origin, "", f"a {cut.get('type')} is not read (MonoCuts with a recording only)")
            continue
        path = _recording_file(cut["recording"], root, allow_outside)
        text = _supervision_text(cut.get("supervisions", []))
        if isinstance(path, str) or not text:
            reason = path if isinstance(path, str) else "the cut has no supervision text (a list of objects)"
            yield Rejected(origin, "", reason)
            continue
        yield _asr_entry(origin, cut, path, text)


def _read_segments(recordings: Path, supervisions: Path, allow_outside: bool) -> Iterator[Row]:
    if not supervisions.is_file():
        raise UserError(f"{supervisions}: no such SupervisionSet")
    files: dict[str, Path | str] = {}  # recording id -> its file (recordings are few next to segments)
    for number, recording in _jsonl_gz(recordings):
        if isinstance(recording, dict) and "id" in recording:
            files[str(recording["id"])] = _recording_file(recording, recordings.parent, allow_outside)
        else:
            yield Rejected(f"{recordings}:{number}", "", "not a recording")
    for number, segment in _jsonl_gz(supervisions):
        origin = f"{supervisions}:{number}"
        if not isinstance(segment, dict) or "recording_id" not in segment:
            yield Rejected(origin, "", "not a supervision segment")
            continue
        path = files.get(str(segment["recording_id"]), f"no recording {segment['recording_id']!r} in {recordings}")
        text = segment.get("text")
        if isinstance(path, str) or not isinstance(text, str) or not text.strip():
            yield Rejected(origin, "", path if isinstance(path, str) else "the segment has no text")
            continue
        yield _asr_entry(origin, segment, path, text.strip())
