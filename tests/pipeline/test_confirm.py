"""A reduced `coat-pipe quickstart --confirm` (the sixth design, the default) end to end (one seed, a few
steps, 2 DeepSpeed CPU ranks): three disjoint splits, four arms that differ only in their arm settings,
validation while training, likelihood scoring of the test split, a report read from those files, and
resuming after a stop."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.lab.synth_benchmark import load_synth
from tests.helpers import stop_during_first_training, subprocess_env
from tests.pipeline.test_quickstart import TWIN

COAT_PIPE = Path(sys.executable).parent / "coat-pipe"
STEPS = 16
REDUCED = ["--seeds", "1", "--steps", str(STEPS), "--train-clips", "24", "--heldout-clips", "12"]
ARMS = ("base-seed0", "control-seed0", "coat-seed0", "oracle-seed0")

pytestmark = pytest.mark.slow  # one reduced confirmatory run (DeepSpeed, 2 ranks, four arms)


def confirm(out: Path) -> list[str]:
    path = out.parent / "confirm-settings.yaml"
    twin = {"twin": TWIN["twin"] | {"window_s": 4, "longest_clip_s": 4.0}}  # the sixth design's 4 s window
    path.write_text(yaml.safe_dump(twin | {"validation_clips": 12, "train": {"eval_every": 8, "save_every": 8}}))
    return [str(COAT_PIPE), "quickstart", "--confirm", "--out", str(out), *REDUCED, "--config", str(path)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A confirmatory run stopped during its first training, then run again to the end."""
    out = tmp_path_factory.mktemp("confirm") / "qc"
    stop_during_first_training(confirm(out), out / "runs" / "base-seed0" / "metrics.jsonl", "base-seed0")
    done = subprocess.run(confirm(out), capture_output=True, text=True, env=subprocess_env(), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done


def test_the_three_splits_are_disjoint_and_ask_the_target_carried_types(finished):
    out, _ = finished
    splits = {name: load_synth(out / "data" / name) for name in ("train", "validation", "test")}
    assert [len(v) for v in splits.values()] == [24, 12, 12]
    for items in splits.values():
        assert {i.groups["task"] for i in items} == {"pitch_level", "pitch_direction", "louder_half"}
    waves = {name: {i.audio[0] for i in items} for name, items in splits.items()}  # the clips' bytes
    assert not (waves["train"] & waves["validation"]) and not (waves["train"] & waves["test"])
    assert not (waves["validation"] & waves["test"])


def test_four_arms_differ_only_in_their_arm_settings_and_validate_while_training(finished):
    out, _ = finished
    configs = [yaml.safe_load((out / "runs" / n / "config.yaml").read_text()) for n in ARMS]
    assert [c["model"].pop("no_think") for c in configs] == [True, False, False, False]
    assert [c["model"].pop("distill_weight") for c in configs] == [1.0, 0.0, 1.0, 0.0]
    assert [c["model"].pop("oracle") for c in configs] == [False, False, False, True]
    for config, name in zip(configs, ARMS):
        assert Path(config.pop("out")).name == name
        assert Path(config["val_corpora"][0]["path"]) == (out / "data" / "validation").resolve()
    assert all(c == configs[0] for c in configs)
    for name in ARMS:
        rows = [json.loads(line) for line in (out / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if "val/validation/accuracy" in r] == [8, 16]
        assert (out / "runs" / name / "batches-rank1.jsonl").is_file()  # a second rank trained


def test_the_report_reads_the_test_scores_and_gives_no_verdict_without_seeds(finished):
    out, done = finished
    report = (out / "report.md").read_text()
    test = [i.id for i in load_synth(out / "data" / "test")]
    for name in ARMS:
        rows = [
            json.loads(line) for line in (out / "runs" / name / "eval" / "predictions.jsonl").read_text().splitlines()
        ]
        assert [r["id"] for r in rows] == test and all("likelihood" not in k for r in rows for k in r)
        accuracy = sum(r["correct"] for r in rows) / len(rows)
        metrics = json.loads((out / "runs" / name / "eval" / "metrics.json").read_text())
        assert metrics["accuracy"] == pytest.approx(accuracy)
    all_row = next(line for line in report.splitlines() if line.startswith("| all questions |"))
    cells = [c.strip() for c in all_row.strip("|").split("|")]
    expected = [json.loads((out / "runs" / n / "eval" / "metrics.json").read_text())["accuracy"] for n in ARMS]
    assert [float(c) for c in cells[2:]] == [round(100 * a, 1) for a in expected]
    # the gate's row recomputed from the two runs' predictions: Δ and McNemar's exact p (scipy)
    from scipy.stats import binomtest

    verdicts = {
        n: [json.loads(line)["correct"] for line in (out / "runs" / n / "eval" / "predictions.jsonl").open()]
        for n in ("control-seed0", "oracle-seed0")
    }
    control, oracle = verdicts["control-seed0"], verdicts["oracle-seed0"]
    only_control = sum(c and not o for c, o in zip(control, oracle))
    only_oracle = sum(o and not c for c, o in zip(control, oracle))
    mcnemar = binomtest(only_control, only_control + only_oracle).pvalue if only_control + only_oracle else 1.0
    gate_row = next(line for line in report.splitlines() if line.startswith("| oracle − control | all questions |"))
    delta, seeds_p, p = (c.strip() for c in gate_row.strip("|").split("|")[2:])
    assert float(delta.split(" [")[0]) == round(100 * (sum(oracle) - sum(control)) / len(control), 1)
    assert seeds_p == "—" and float(p) == pytest.approx(mcnemar, rel=1e-2)
    assert "No CoAT verdict is given" in report  # one seed: the gate's seed-level test has nothing to test
    assert (out / "report" / "validation.png").is_file() and (out / "report" / "test_accuracy.png").is_file()
    again = subprocess.run(confirm(out), capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert again.returncode == 0 and "oracle-seed0: already trained" in again.stderr
    assert "oracle-seed0/eval: already scored" in again.stderr
