"""A reduced quickstart end to end (one seed, a few steps, 2 DeepSpeed CPU ranks), its report, and resuming."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import stop_during_first_training, subprocess_env

COAT_PIPE = Path(sys.executable).parent / "coat-pipe"
STEPS = 40
REDUCED = ["--seeds", "1", "--steps", str(STEPS), "--train-clips", "36", "--heldout-clips", "24"]

pytestmark = pytest.mark.slow  # every test here reads one reduced quickstart run (DeepSpeed, 2 ranks)


# A pretrained twin as small as can still learn a little, so that the phase runs as it does by default
TWIN = {"twin": {"steps": 12, "train_clips": 16, "heldout_clips": 4, "warmup_steps": 2}}


def settings(out: Path) -> list[str]:
    """REDUCED, and --config with the small twin (written beside DIR)."""
    path = out.parent / "quickstart-settings.yaml"
    path.write_text(yaml.safe_dump(TWIN))
    return [*REDUCED, "--config", str(path)]


def quickstart(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(COAT_PIPE), "quickstart", "--out", str(out), *settings(out), *extra],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=900,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A quickstart stopped during its first training, then run again to the end."""
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    command = [str(COAT_PIPE), "quickstart", "--out", str(out), *settings(out)]
    stop_during_first_training(command, out / "runs" / "coat-seed0" / "metrics.jsonl", "coat-seed0")
    interrupted_at = (out / "runs" / "coat-seed0" / "checkpoints" / "latest").read_text().strip()
    done = quickstart(out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done, interrupted_at


ARMS = ("coat-seed0", "base-seed0", "control-seed0")


def test_reduced_quickstart_trains_the_three_arms_on_two_ranks(finished):
    out, _, _ = finished
    for name in ARMS:
        run = out / "runs" / name
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, STEPS + 1))  # once each, the interrupted run's included
        assert (run / "batches-rank1.jsonl").is_file()  # a second rank trained
        assert json.loads((run / "ds_config.json").read_text())["zero_optimization"]["stage"] == 2
        assert (run / "final" / "config.yaml").is_file()
    coat, base, control = (yaml.safe_load((out / "runs" / n / "config.yaml").read_text()) for n in ARMS)
    assert [c["model"].pop("no_think") for c in (coat, base, control)] == [False, True, False]
    assert [c["model"].pop("distill_weight") for c in (coat, base, control)] == [1.0, 1.0, 0.0]
    for config, name in zip((coat, base, control), ARMS):
        assert Path(config.pop("out")).name == name
    assert coat == base == control  # every other setting the same: data, steps, seed, LoRA, lr


def test_a_stop_checkpoints_and_the_next_run_resumes(finished):
    out, _, interrupted_at = finished
    step = int(interrupted_at.removeprefix("step"))
    assert 0 < step < STEPS  # saved on the signal, not at a save_every boundary or the end
    assert f"resumed from {interrupted_at}" in (out / "logs" / "train.log").read_text()


def _verdicts(out: Path, name: str, field: str) -> dict[str, bool]:
    rows = (out / "runs" / name / "eval" / "predictions.jsonl").read_text().splitlines()
    return {row["id"]: bool(row[field]) for row in map(json.loads, rows)}


DELTA = r"([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\] \| [^|]+ \| ([\d.e+-]+)"  # Δ [interval] | seeds p | McNemar p


def test_report_numbers_are_the_runs_own_and_its_statistics_check_out(finished):
    """Every accuracy, Δ, interval and p in the report against the runs' files, computed here another way:
    McNemar by scipy's exact binomial test, the interval by the normal approximation of the paired mean."""
    from scipy.stats import binomtest

    out, done, _ = finished
    report = (out / "report.md").read_text()
    metrics = {n: json.loads((out / "runs" / n / "eval" / "metrics.json").read_text()) for n in ARMS}
    for name in ARMS:
        generated, likely = metrics[name]["accuracy"], metrics[name]["likelihood"]["accuracy"]
        assert f"`{name}` {100 * generated:.1f} / {100 * likely:.1f} %" in report
    for scoring, field in (("likelihood", "likelihood_correct"), ("generate", "correct")):
        section = report.split(f"### {scoring} scoring")[1].split("###")[0].split("## ")[0]
        accuracy = re.search(r"^\| all questions \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", section, re.M)
        assert accuracy is not None, section
        for value, name in zip(accuracy.groups()[1:], ARMS):
            held = metrics[name] if scoring == "generate" else metrics[name]["likelihood"]
            assert float(value) == pytest.approx(100 * held["accuracy"], abs=0.05)
        paired = re.search(rf"^\| all questions \| {DELTA} \| {DELTA} \|$", section, re.M)
        assert paired is not None, section
        coat = _verdicts(out, "coat-seed0", field)
        for other_name, cells in (("base-seed0", paired.groups()[:4]), ("control-seed0", paired.groups()[4:])):
            other = _verdicts(out, other_name, field)
            delta, low, high, p = map(float, cells)
            diff = np.array([coat[i] - other[i] for i in coat], dtype=float)
            assert delta == pytest.approx(100 * diff.mean(), abs=0.05)
            coat_only, other_only = int((diff > 0).sum()), int((diff < 0).sum())
            exact = binomtest(coat_only, coat_only + other_only, 0.5).pvalue if coat_only + other_only else 1.0
            assert p == pytest.approx(exact, rel=5e-3)
            half = 1.96 * 100 * diff.std() / np.sqrt(len(diff))
            # A bootstrap percentile of a mean of 0/±1 values moves in steps of one item (100 / n points)
            slack = 0.25 * half + 100 / len(diff) + 0.1
            assert low <= delta <= high
            assert abs(low - (delta - half)) <= slack and abs(high - (delta + half)) <= slack, (low, high, delta, half)
    assert "80 % power for |Δ| ≥" in report and "the exact sign-flip test cannot give p below 1" in report
    twin = json.loads((out / "model" / "twin.json").read_text())  # every arm started from the pretrained twin
    assert twin["recipe"]["steps"] == 12 and "The twin was pretrained first" in report
    for name in ARMS:
        assert yaml.safe_load((out / "runs" / name / "config.yaml").read_text())["model"]["model_path"] == str(
            (out / "model").resolve()
        )
    probes = json.loads((out / "probes" / "seed0" / "probes.json").read_text())
    assert len(probes) == 3 and "pitch/clip@think" in next(iter(probes.values()))
    for png in ("accuracy.png", "losses.png", "readout.png"):
        assert (out / "report" / png).read_bytes()[:4] == b"\x89PNG"
    assert "all questions" in done.stdout and "CoAT − baseline" in done.stdout  # the tables on stdout


def test_rerun_skips_what_is_done_and_other_settings_are_refused(finished):
    out, _, _ = finished
    (out / "runs" / "base-seed0" / "eval" / "metrics.json").unlink()
    again = quickstart(out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "coat-seed0: already trained" in again.stderr and "base-seed0: already trained" in again.stderr
    assert "coat-seed0/eval: already scored" in again.stderr
    assert "base-seed0: held-out accuracy" in again.stderr  # only the missing score was redone
    refused = subprocess.run(
        [str(COAT_PIPE), "quickstart", "--out", str(out), "--seeds", "1", "--steps", "7"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert refused.returncode == 2
    assert "holds a quickstart with other settings" in refused.stderr and f"steps: {STEPS} → 7" in refused.stderr
    assert "Traceback" not in refused.stderr
