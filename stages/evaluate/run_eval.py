"""`coat-pipe eval`: batched answers to a benchmark, then its scores, written to an output folder.

OUT/predictions.jsonl   one row per item: id, prediction (null when unanswered), problem, verdict
OUT/metrics.json        accuracy (a fraction) or wer, n, unanswered, breakdowns
OUT/metrics.md          the same as tables; OUT/confusion.png for classification sets
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from stages.audio import AudioError, decode_audio, read_audio_file, resample
from stages.evaluate.answer import answer, load_run
from stages.evaluate.benchmarks import BENCHMARKS, EvalItem, load_benchmark
from stages.evaluate.metrics import judge, markdown, score
from stages.evaluate.prompts import PRESETS, PromptFormat
from stages.output_folder import refuse_taken, replaced_folder
from stages.progress import audio_progress
from stages.train.backbones.base import SAMPLE_RATE
from stages.train.likelihood import pick_choice
from stages.train.model import CoatModel
from stages.train.oracle import corpus_targets, stack_targets
from stages.train.targets import SlotTargets
from store_schema.errors import UserError
from store_schema.layout import Status

SCORINGS = ("generate", "likelihood", "both")


def item_wave(item: EvalItem) -> np.ndarray:
    """The item's audio as 16 kHz mono float32; AudioError names the file and the reason."""
    if isinstance(item.audio, tuple):
        wave, rate = decode_audio(item.audio[0], f"{item.id}.{item.audio[1]}")
    else:
        wave, rate, _ = read_audio_file(item.audio)
    wave = resample(wave, rate, SAMPLE_RATE)
    if wave.size == 0:
        raise AudioError(Status.EMPTY, f"{item.id}: no samples at {SAMPLE_RATE} Hz")
    return wave


def write_outputs(
    out: Path,
    benchmark: str,
    items: list[EvalItem],
    predictions: dict[str, str | None],
    title: str = "",
    likely: dict[str, str] | None = None,
) -> dict[str, Any]:
    """predictions.jsonl, metrics.json, metrics.md (and confusion.png) for these predictions; with
    `likely` (item -> the most likely allowed answer), its scores beside them under "likelihood"."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.jsonl", "w") as f:
        for item in items:
            row = {"id": item.id, "prediction": predictions.get(item.id), "reference": item.reference}
            if item.groups:
                row["groups"] = item.groups  # what `eval compare` pairs its per-task rows by
            if item.problem:
                row["problem"] = item.problem
            row |= judge(benchmark, item, predictions.get(item.id))
            if likely is not None:
                choice = likely.get(item.id)
                row |= {"likelihood_choice": choice, "likelihood_correct": judge(benchmark, item, choice)["correct"]}
            f.write(json.dumps(row) + "\n")
    metrics = score(benchmark, items, predictions)
    if likely is not None:
        metrics["likelihood"] = score(benchmark, items, dict(likely))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    text = markdown(metrics, title)
    if likely is not None:
        text += "\n" + markdown(metrics["likelihood"], f"{title} (likelihood scoring)")
    (out / "metrics.md").write_text(text)
    if "confusion" in metrics:
        from stages.evaluate.plots import confusion_png

        confusion_png(metrics, out / "confusion.png")
    return metrics


def run_eval(
    run: Path,
    benchmark: str,
    manifest: Path,
    out: Path,
    audio_root: Path | None = None,
    labels: list[str] | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    device: str = "cpu",
    progress: bool = True,
    scoring: str = "generate",
    prompt: PromptFormat = PRESETS["coat"],
    overwrite: bool = False,
) -> tuple[dict[str, Any], list[EvalItem]]:
    """Answer every askable item of the benchmark in batches; score all of them. `scoring`: "generate"
    (the answer is generated text), "likelihood" (the most likely of the item's allowed answers), or
    "both", side by side in metrics.json. `prompt` puts MMAU/MMAR questions (its template) and every
    benchmark's turn (its system prompt); eval.json records it. `out` must be new or empty unless `overwrite`:
    then a finished evaluation there is replaced whole, once this one is done."""
    refuse_taken(out, overwrite)
    if scoring not in SCORINGS:
        raise UserError(f"--scoring {scoring!r}: one of {', '.join(SCORINGS)}")
    if scoring != "generate" and getattr(BENCHMARKS.get(benchmark), "kind", None) not in ("choice", "label", "exact"):
        raise UserError(f"--scoring {scoring}: {benchmark} has no answers to choose from; use --scoring generate")
    items = load_benchmark(benchmark, manifest, audio_root, labels, prompt=prompt)
    model = load_run(run, device)
    predictions: dict[str, str | None] = {}
    likely: dict[str, str] = {}
    askable = [i for i in items if i.problem is None]
    targets = oracle_targets(model, benchmark, manifest, askable)
    if model.oracle is not None:
        for item in askable:
            if item.id not in targets:
                item.problem = "no usable store targets (the oracle answers with them)"
        askable = [i for i in askable if i.problem is None]
    with audio_progress(disable=not progress) as bar:
        task = bar.add_task(f"eval {benchmark}", total=len(askable), audio_s=0.0)
        seconds = 0.0
        for start in range(0, len(askable), batch_size):
            batch, waves = [], []
            for item in askable[start : start + batch_size]:
                try:
                    waves.append(item_wave(item))
                    batch.append(item)
                except AudioError as err:
                    item.problem = f"unreadable audio: {err}"
            if batch and scoring != "likelihood":
                with model.targets_given(stack_targets([targets[i.id] for i in batch]) if targets else {}):
                    said = answer(model, waves, [i.question for i in batch], max_new_tokens, system=prompt.system)
                for item, one in zip(batch, said):
                    predictions[item.id] = one.text
            if batch and scoring != "generate":
                for item, wave in zip(batch, waves):
                    with model.targets_given(targets[item.id] if targets else {}):
                        likely[item.id] = pick_choice(model, wave, item.question, list(item.choices), prompt.system)[0]
            if batch:
                seconds += sum(len(w) for w in waves) / SAMPLE_RATE
            bar.update(task, advance=len(askable[start : start + batch_size]), audio_s=seconds)
    meta = {
        "run": str(run),
        "benchmark": benchmark,
        "manifest": str(manifest),
        "manifest_sha256": manifest_digest(manifest),  # `eval compare` pairs only runs on the same questions
        "scoring": scoring,
        "prompt": prompt.record() if benchmark in ("mmau", "mmar") else {"system": prompt.system},
    }
    if scoring == "likelihood":  # the chosen answer is the prediction the benchmark's own rule scores
        predictions = dict(likely)
    with replaced_folder(out, overwrite) as staging:
        metrics = write_outputs(
            staging, benchmark, items, predictions, f"{benchmark}: {run}", likely if scoring == "both" else None
        )
        (staging / "eval.json").write_text(json.dumps(meta, indent=1))
    return metrics, items


def oracle_targets(
    model: CoatModel, benchmark: str, manifest: Path, items: list[EvalItem]
) -> dict[str, dict[str, SlotTargets]]:
    """An oracle run answers with each clip's true targets at its block: read from the benchmark's corpus
    store (a synth or other extracted corpus); {} for every other model."""
    if model.oracle is None:
        return {}
    if not getattr(BENCHMARKS.get(benchmark), "reads_corpus", False):
        raise UserError(f"{model.source}: an oracle run needs its clips' store targets; {benchmark} has no store")
    k = len(model.think.slots) if model.think else 0
    return corpus_targets(manifest, model.specs, k, [i.id for i in items])


def manifest_digest(manifest: Path | str) -> str | None:
    """sha256 of the manifest file (of a corpus folder's corpus.json); None where it cannot be read."""
    from store_schema.location import corpus_path

    path = corpus_path(manifest)
    path = path / "corpus.json" if path.is_dir() else path
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def read_predictions(path: Path) -> dict[str, str | None]:
    """predictions.jsonl keyed by the benchmark's id, field `prediction` (a string, or null: unanswered).

    Raises UserError naming the file and line for a row that is not an object with an id, a prediction
    that is not text, or an id given twice (which answer would count is not for the scorer to guess)."""
    rows: dict[str, str | None] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: line {number} is not JSON ({err})") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str | int) or isinstance(row.get("id"), bool):
            raise UserError(f"{path}: line {number} is not an object with an id (a string or an integer)")
        prediction = row.get("prediction")
        if prediction is not None and not isinstance(prediction, str):
            raise UserError(f"{path}: line {number}: the prediction is {type(prediction).__name__}, not text or null")
        item = str(row["id"])
        if item in rows:
            raise UserError(f"{path}: line {number} repeats id {item!r} of line {lines[item]}")
        rows[item], lines[item] = prediction, number
    return rows
