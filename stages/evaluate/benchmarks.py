"""Benchmark manifests read into EvalItems: what to ask about which audio, and what counts as right.

    mmau            MMAU JSON list: id, audio_id, question, choices, answer, task, difficulty, sub-category
    mmar            MMAR JSONL: audio_path, question, choices, answer, modality, category, sub-category
    classification  JSONL: audio, label (emotion, genre, any label set; labels from --labels or the manifest)
    asr             JSONL: audio, text (LibriSpeech-style), scored by corpus-level WER

Each registers itself here (`register_benchmark`) with what its manifest is read into and how an answer is
judged; another benchmark does the same from its own module (the lab's synth benchmark: stages/lab/).

A row without its fields, or whose audio is missing, stays in the benchmark as an item with a
`problem`: it is reported and counted as unanswered, never dropped from the denominator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.evaluate.prompts import PRESETS, PromptFormat
from store_schema.errors import UserError

# The ways an answer is judged: one of the choices (string match), a label, corpus WER, the exact answer.
JUDGED_BY = ("choice", "label", "wer", "exact")


@dataclass
class EvalItem:
    id: str
    audio: Path | tuple[bytes, str] | None  # a file, or (bytes, extension) from a tar
    question: str  # exactly what the model is asked
    reference: str  # the answer, label or transcript
    choices: list[str] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # breakdown keys: task, difficulty, …
    problem: str | None = None  # why it cannot be asked; then it is unanswered


def choice_question(question: str, choices: list[str], prompt: PromptFormat = PRESETS["coat"]) -> str:
    return prompt.render(question, choices)


def _rows_json_list(manifest: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{manifest}: not a readable JSON file ({err})") from err
    if not isinstance(rows, list):
        raise UserError(f"{manifest}: expected a JSON list of questions (the MMAU format)")
    return rows


def _rows_jsonl(manifest: Path) -> list[dict[str, Any] | str]:
    """One dict per line; a line that is not a JSON object stays as the reason it is not."""
    try:
        lines = manifest.read_text().splitlines()
    except OSError as err:
        raise UserError(f"{manifest}: cannot read ({err})") from err
    rows: list[dict[str, Any] | str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append(row if isinstance(row, dict) else f"line {number}: not a JSON object")
        except json.JSONDecodeError as err:
            rows.append(f"line {number}: not JSON ({err.msg})")
    return rows


def _item(
    row: dict[str, Any] | str,
    index: int,
    need: tuple[str, ...],
    audio_key: str,
    root: Path,
    build: Callable[[dict[str, Any]], EvalItem],
    need_audio: bool = True,
) -> EvalItem:
    """`build(row)` when the row has every field and its audio exists; else an item with the problem."""
    if isinstance(row, str):
        return EvalItem(f"row{index}", None, "", "", problem=row)
    item_id = str(row.get("id", f"row{index}"))
    missing = [k for k in need if row.get(k) in (None, "", [])]
    if missing:
        return EvalItem(item_id, None, "", str(row.get("answer", "")), problem=f"missing field(s) {', '.join(missing)}")
    item = build(row)
    audio = root / str(row[audio_key])
    item.audio = audio
    if need_audio and not audio.is_file():
        item.problem = f"audio file not found: {audio}"
    return item


def load_mmau(
    manifest: Path, audio_root: Path, need_audio: bool = True, prompt: PromptFormat = PRESETS["coat"]
) -> list[EvalItem]:
    need = ("id", "audio_id", "question", "choices", "answer")

    def build(row: dict[str, Any]) -> EvalItem:
        groups = {k: str(row[k]) for k in ("task", "difficulty", "sub-category") if row.get(k)}
        choices = [str(c) for c in row["choices"]]
        return EvalItem(
            str(row["id"]), None, choice_question(row["question"], choices, prompt), row["answer"], choices, groups
        )

    return [
        _item(r, i, need, "audio_id", audio_root, build, need_audio) for i, r in enumerate(_rows_json_list(manifest))
    ]


def load_mmar(
    manifest: Path, audio_root: Path, need_audio: bool = True, prompt: PromptFormat = PRESETS["coat"]
) -> list[EvalItem]:
    need = ("audio_path", "question", "choices", "answer")

    def build(row: dict[str, Any]) -> EvalItem:
        groups = {k: str(row[k]) for k in ("modality", "category", "sub-category") if row.get(k)}
        choices = [str(c) for c in row["choices"]]
        item_id = str(row.get("id", ""))
        return EvalItem(
            item_id, None, choice_question(row["question"], choices, prompt), row["answer"], choices, groups
        )

    items = [
        _item(r, i, need, "audio_path", audio_root, build, need_audio) for i, r in enumerate(_rows_jsonl(manifest))
    ]
    for index, item in enumerate(items):
        item.id = item.id or f"row{index}"  # MMAR rows may carry no id: the line order is the key
    return items


def load_classification(
    manifest: Path, audio_root: Path, labels: list[str] | None, need_audio: bool = True
) -> list[EvalItem]:
    rows = _rows_jsonl(manifest)
    known = labels or sorted({str(r["label"]) for r in rows if isinstance(r, dict) and r.get("label")})
    question = f"Which label describes the audio best: {', '.join(known)}? Answer with the label only."

    def build(row: dict[str, Any]) -> EvalItem:
        label = str(row["label"])
        item = EvalItem(str(row.get("id") or row["audio"]), None, question, label, known, {"label": label})
        if label not in known:
            item.problem = f"label {label!r} is not in the label list"
        return item

    return [_item(r, i, ("audio", "label"), "audio", audio_root, build, need_audio) for i, r in enumerate(rows)]


def load_asr(manifest: Path, audio_root: Path, need_audio: bool = True) -> list[EvalItem]:
    def build(row: dict[str, Any]) -> EvalItem:
        return EvalItem(str(row.get("id") or row["audio"]), None, "Transcribe the speech.", str(row["text"]))

    return [
        _item(r, i, ("audio", "text"), "audio", audio_root, build, need_audio)
        for i, r in enumerate(_rows_jsonl(manifest))
    ]


@dataclass(frozen=True)
class Benchmark:
    """What evaluation needs to know of a benchmark: how an answer is judged (`kind`, one of JUDGED_BY) and
    how its manifest becomes items: `load(manifest, audio_root, labels, need_audio, prompt)`. A benchmark
    whose manifest is a corpus (a folder or an object-store URL) sets `reads_corpus`."""

    kind: str
    load: Callable[..., list[EvalItem]]
    reads_corpus: bool = False


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(name: str, benchmark: Benchmark) -> None:
    if benchmark.kind not in JUDGED_BY:
        raise ValueError(f"benchmark {name!r}: kind {benchmark.kind!r} is not one of {JUDGED_BY}")
    BENCHMARKS[name] = benchmark


register_benchmark("mmau", Benchmark("choice", lambda m, root, _, need, prompt: load_mmau(m, root, need, prompt)))
register_benchmark("mmar", Benchmark("choice", lambda m, root, _, need, prompt: load_mmar(m, root, need, prompt)))
register_benchmark(
    "classification", Benchmark("label", lambda m, root, labels, need, _: load_classification(m, root, labels, need))
)
register_benchmark("asr", Benchmark("wer", lambda m, root, _, need, __: load_asr(m, root, need)))


def load_benchmark(  # noqa: ANN201
    name: str,
    manifest: Path | str,
    audio_root: Path | None = None,
    labels: list[str] | None = None,
    need_audio: bool = True,
    prompt: PromptFormat = PRESETS["coat"],
):
    """The items of benchmark `name` from its manifest (audio paths relative to `audio_root`, default
    the manifest's folder). `need_audio=False` (re-scoring) does not look for the audio files."""
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    benchmark = BENCHMARKS[name]
    if benchmark.reads_corpus:  # a folder or an object-store URL, read by the benchmark itself
        return _unique_ids(benchmark.load(manifest, audio_root, labels, need_audio, prompt), manifest)
    manifest = Path(manifest)
    if not manifest.exists():
        raise UserError(f"{manifest}: no such manifest")
    root = audio_root or (manifest if manifest.is_dir() else manifest.parent)
    return _unique_ids(benchmark.load(manifest, root, labels, need_audio, prompt), manifest)


def _unique_ids(items: list[EvalItem], manifest: Path | str) -> list[EvalItem]:
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise UserError(f"{manifest}: item ids are not unique, so predictions cannot be keyed by them")
    return items
