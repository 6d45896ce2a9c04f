"""`coat-pipe train --sweep`: several runs in one process, each exactly the run its own command trains."""

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import cli

TRAIN = ["train", "--backbone", "tiny-qwen2-audio", "--think-tokens", "8", "--batch-size", "4", "--lr", "2e-3"]

# The rows' wall-clock fields differ between any two runs; everything else must not.
WALL_CLOCK = ("samples_per_s", "audio_hours_per_s", "elapsed_s", "eta_s")


def _losses(run: Path) -> list[tuple[float, ...]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [tuple(r[k] for k in sorted(r) if k not in WALL_CLOCK) for r in rows]


@pytest.mark.slow
def test_each_run_of_a_sweep_is_the_run_its_own_command_trains(extracted_corpus, tmp_path):
    """The baseline trained second in a sweep, after a control run in the same process, has the losses,
    batches and settings of the same baseline trained alone: nothing of the first run leaks into it."""
    sweep = tmp_path / "arms.yaml"
    sweep.write_text(
        yaml.safe_dump([
            {"name": "control", "seed": 3, "model": {"distill_weight": 0.0}},
            {"name": "base", "seed": 3, "model": {"no_think": True}},
        ])
    )
    args = [*TRAIN, "--corpus", extracted_corpus, "--steps", 3, "--workers", 0]
    result = cli(*args, "--out", tmp_path / "runs", "--sweep", sweep)
    assert result.output.count("trained 3 steps") == 2
    cli(*args, "--out", tmp_path / "alone", "--seed", 3, "--no-think")
    swept, alone = tmp_path / "runs" / "base", tmp_path / "alone"
    assert _losses(swept) == _losses(alone)
    assert (swept / "batches-rank0.jsonl").read_text() == (alone / "batches-rank0.jsonl").read_text()
    configs = [yaml.safe_load((run / "config.yaml").read_text()) for run in (swept, alone)]
    assert configs[0].pop("out") == str(swept) and configs[1].pop("out") == str(alone)
    assert configs[0] == configs[1]
    control = yaml.safe_load((tmp_path / "runs" / "control" / "config.yaml").read_text())
    assert control["model"]["distill_weight"] == 0.0 and control["seed"] == 3
    # train.sh adds --resume to every launch: a finished sweep goes through again without training
    again = cli(*args, "--out", tmp_path / "runs", "--sweep", sweep, "--resume")
    assert again.output.count("resumed from step0000003") == 2
    assert _losses(swept) == _losses(alone)


@pytest.mark.parametrize(
    "entries, reason",
    [
        ({"name": "a"}, "a non-empty YAML list"),
        ([], "a non-empty YAML list"),
        ([{"seed": 1}], "entry 1 is not a mapping with a name"),
        ([{"name": "a"}, {"name": "../b"}], "entry 2: name '../b' must be a plain folder name"),
        ([{"name": "a"}, {"name": "a"}], "entry 2 repeats the name 'a'"),
        ([{"name": "a", "out": "/tmp/x"}], "entry 1 sets out"),
        ([{"name": "a"}, {"name": "b", "lr": "fast"}], "entry 2 (b)"),
    ],
)
def test_a_bad_sweep_is_refused_before_any_run_starts(entries, reason, extracted_corpus, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(entries))
    result = cli(*TRAIN, "--corpus", extracted_corpus, "--out", tmp_path / "runs", "--sweep", sweep, expect=2)
    text = " ".join(result.output.split())
    assert str(sweep) in text and reason in text, text
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_a_sweep_whose_last_folder_is_taken_stops_before_the_first_run(extracted_corpus, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump([{"name": "a"}, {"name": "b"}, {"name": "c", "model": {"think_layer": 99}}]))
    runs = tmp_path / "runs"
    result = cli(*TRAIN, "--corpus", extracted_corpus, "--out", runs, "--sweep", sweep, expect=2)
    assert "think_layer" in result.output and not runs.exists()
    (runs / "b").mkdir(parents=True)
    (runs / "b" / "notes.txt").write_text("someone else's")
    sweep.write_text(yaml.safe_dump([{"name": "a"}, {"name": "b"}]))
    result = cli(*TRAIN, "--corpus", extracted_corpus, "--out", runs, "--sweep", sweep, expect=2)
    assert f"{runs / 'b'} is not empty" in " ".join(result.output.split()) and not (runs / "a").exists()
