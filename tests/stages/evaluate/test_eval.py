"""eval on every benchmark format: answers, scores, breakdowns; missing audio reported and counted."""

import json

import numpy as np
import pytest
import soundfile as sf

from stages.evaluate.benchmarks import load_benchmark
from tests.helpers import cli


def _tone(path, seconds=1.5, rate=22050):
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate)


def test_mmau_test_mini_with_stand_in_audio_gives_the_full_breakdown(mmau_manifest, make_run, tmp_path):
    rows = json.loads(mmau_manifest.read_text())
    chosen = []
    for task in ("sound", "music", "speech"):  # 4 per task, across difficulties
        chosen += [r for r in rows if r["task"] == task][:4]
    for row in chosen:  # synthetic audio stands in for the files the benchmark does not ship
        _tone(tmp_path / "audio" / row["audio_id"])
    out = tmp_path / "out"
    result = cli(
        "eval",
        "--run",
        make_run("tiny-qwen2-audio"),
        "--benchmark",
        "mmau",
        "--manifest",
        mmau_manifest,
        "--audio-root",
        tmp_path / "audio",
        "--out",
        out,
        "--batch-size",
        6,
        "--max-new-tokens",
        4,
        "--no-progress",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 1000 and metrics["unanswered"] == 988
    assert set(metrics["breakdowns"]) == {"task", "difficulty", "sub-category"}
    assert set(metrics["breakdowns"]["task"]) == {"sound", "music", "speech"}
    assert sum(v["n"] for v in metrics["breakdowns"]["difficulty"].values()) == 1000
    assert 0.0 <= metrics["accuracy"] <= 12 / 1000  # at most the answered items can be right
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 1000
    assert sum(p["prediction"] is not None for p in predictions) == 12
    assert "unanswered items (988" in result.output and "audio file not found" in result.output
    table = (out / "metrics.md").read_text()
    assert "| task | n | accuracy | parser | unanswered |" in table and "| sub-category |" in table


def test_eval_score_rescores_saved_predictions_with_the_benchmarks_own_ids(mmau_manifest, tmp_path):
    rows = json.loads(mmau_manifest.read_text())
    # the right answer's text for the first 100, a wrong choice for the next 100, nothing for the rest
    lines = [{"id": r["id"], "prediction": r["answer"]} for r in rows[:100]]
    lines += [{"id": r["id"], "prediction": next(c for c in r["choices"] if c != r["answer"])} for r in rows[100:200]]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cli("eval", "score", "--benchmark", "mmau", "--manifest", mmau_manifest, "--predictions", predictions)
    metrics = json.loads((tmp_path / "predictions-scored" / "metrics.json").read_text())
    assert metrics["n"] == 1000 and metrics["unanswered"] == 800
    assert metrics["accuracy"] == pytest.approx(0.1)
    assert metrics["accuracy_parsed"] == pytest.approx(0.1)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "not-an-mmau-id", "prediction": "x"}) + "\n")
    result = cli("eval", "score", "--benchmark", "mmau", "--manifest", mmau_manifest, "--predictions", bad, expect=2)
    assert "not-an-mmau-id" in result.output


def test_mmar_rows_without_fields_are_named_and_counted(tmp_path):
    _tone(tmp_path / "a.wav")
    rows = [
        {
            "id": "q1",
            "audio_path": "a.wav",
            "question": "Which?",
            "choices": ["dog", "cat"],
            "answer": "dog",
            "modality": "sound",
            "category": "c",
            "sub-category": "s",
        },
        {"id": "q2", "audio_path": "a.wav", "choices": ["dog", "cat"], "answer": "cat", "modality": "sound"},
    ]
    manifest = tmp_path / "mmar.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    items = load_benchmark("mmar", manifest)
    assert [i.problem for i in items] == [None, "missing field(s) question", "line 3: not JSON (Expecting value)"]
    assert items[0].groups == {"modality": "sound", "category": "c", "sub-category": "s"}
    assert "(A) dog\n(B) cat" in items[0].question


@pytest.mark.slow
def test_classification_asr_and_synth(make_run, speech_dir, tmp_path, synth_corpus):
    run = make_run("tiny-qwen2-audio")
    wavs = sorted(speech_dir.glob("*/*.wav"))[:6]
    rows = [{"audio": str(w), "label": w.parent.name} for w in wavs]
    rows += [{"audio": str(tmp_path / "gone.wav"), "label": wavs[0].parent.name}, {"audio": str(wavs[0])}]
    manifest = tmp_path / "langs.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli(
        "eval",
        "--run",
        run,
        "--benchmark",
        "classification",
        "--manifest",
        manifest,
        "--out",
        tmp_path / "cls",
        "--max-new-tokens",
        3,
        "--no-progress",
    )
    metrics = json.loads((tmp_path / "cls" / "metrics.json").read_text())
    assert metrics["n"] == 8 and metrics["unanswered"] == 2
    assert set(metrics["recall"]) == {w.parent.name for w in wavs}
    assert np.array(metrics["confusion"]).sum() == 7  # the row without a label has no true class
    assert (tmp_path / "cls" / "confusion.png").stat().st_size > 5_000

    english = sorted(speech_dir.glob("en/*.wav"))
    asr = tmp_path / "asr.jsonl"
    asr.write_text(
        "".join(json.dumps({"audio": str(w), "text": w.with_suffix(".txt").read_text()}) + "\n" for w in english)
    )
    cli(
        "eval",
        "--run",
        run,
        "--benchmark",
        "asr",
        "--manifest",
        asr,
        "--out",
        tmp_path / "asr",
        "--max-new-tokens",
        3,
        "--no-progress",
    )
    metrics = json.loads((tmp_path / "asr" / "metrics.json").read_text())
    assert metrics["n"] == len(english) and metrics["words"] > 0 and metrics["wer"] > 0

    for name, no_think in (("coat", False), ("base", True)):
        cli(
            "eval",
            "--run",
            make_run("tiny-qwen2-audio", no_think),
            "--benchmark",
            "synth",
            "--manifest",
            synth_corpus,
            "--out",
            tmp_path / name,
            "--max-new-tokens",
            3,
            "--no-progress",
        )
    metrics = json.loads((tmp_path / "coat" / "metrics.json").read_text())
    assert metrics["n"] == 18 and len(metrics["breakdowns"]["task"]) == 6
    result = cli("eval", "compare", tmp_path / "base", tmp_path / "coat")
    assert "Δ coat" in result.output and "task: pitch_level" in result.output
    assert (tmp_path / "base" / "compare.png").stat().st_size > 5_000
