"""A reduced quickstart end to end (one seed, a few steps, 2 DeepSpeed CPU ranks), its report, and resuming."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import subprocess_env

COAT_PIPE = Path(sys.executable).parent / "coat-pipe"
STEPS = 40
REDUCED = ["--seeds", "1", "--steps", str(STEPS), "--train-clips", "36", "--heldout-clips", "24"]

pytestmark = pytest.mark.slow  # every test here reads one reduced quickstart run (DeepSpeed, 2 ranks)


def quickstart(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(COAT_PIPE), "quickstart", "--out", str(out), *REDUCED, *extra],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=900,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A quickstart stopped during its first training, then run again to the end."""
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    command = [str(COAT_PIPE), "quickstart", "--out", str(out), *REDUCED]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    metrics = out / "runs" / "coat-seed0" / "metrics.jsonl"
    deadline = time.monotonic() + 600
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2) and first.poll() is None:
        assert time.monotonic() < deadline, "the first training never logged a step"
        time.sleep(0.1)
    # SIGTERM takes Ctrl-C's path (SIGINT itself is ignored in a background job, as under `nohup … &`)
    first.send_signal(signal.SIGTERM)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 2, stdout + stderr
    assert "interrupted while training coat-seed0" in stderr and "Traceback" not in stderr
    interrupted_at = (out / "runs" / "coat-seed0" / "checkpoints" / "latest").read_text().strip()
    done = quickstart(out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done, interrupted_at


def test_reduced_quickstart_trains_both_variants_on_two_ranks(finished):
    out, _, _ = finished
    for name in ("coat-seed0", "base-seed0"):
        run = out / "runs" / name
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, STEPS + 1))  # once each, the interrupted run's included
        assert (run / "batches-rank1.jsonl").is_file()  # a second rank trained
        assert json.loads((run / "ds_config.json").read_text())["zero_optimization"]["stage"] == 2
        assert (run / "final" / "config.yaml").is_file()
    coat, base = (yaml.safe_load((out / "runs" / n / "config.yaml").read_text()) for n in ("coat-seed0", "base-seed0"))
    assert (coat["model"].pop("no_think"), base["model"].pop("no_think")) == (False, True)
    assert Path(coat.pop("out")).name == "coat-seed0" and Path(base.pop("out")).name == "base-seed0"
    assert coat == base  # every other setting the same: data, steps, seed, LoRA, lr


def test_a_stop_checkpoints_and_the_next_run_resumes(finished):
    out, _, interrupted_at = finished
    step = int(interrupted_at.removeprefix("step"))
    assert 0 < step < STEPS  # saved on the signal, not at a save_every boundary or the end
    assert f"resumed from {interrupted_at}" in (out / "logs" / "coat-seed0.log").read_text()


def test_report_numbers_are_the_runs_own(finished):
    out, done, _ = finished
    report = (out / "report.md").read_text()
    for name in ("coat-seed0", "base-seed0"):
        accuracy = json.loads((out / "runs" / name / "eval" / "metrics.json").read_text())["accuracy"]
        assert f"`{name}` {100 * accuracy:.1f} %" in report
    row = re.search(r"^\| all questions \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([+-][\d.]+) \|$", report, re.M)
    assert row is not None, report
    coat = json.loads((out / "runs" / "coat-seed0" / "eval" / "metrics.json").read_text())["accuracy"]
    base = json.loads((out / "runs" / "base-seed0" / "eval" / "metrics.json").read_text())["accuracy"]
    assert float(row[2]) == pytest.approx(100 * coat, abs=0.05)
    assert float(row[3]) == pytest.approx(100 * base, abs=0.05)
    assert float(row[4]) == pytest.approx(100 * (coat - base), abs=0.1)
    probes = json.loads((out / "probes" / "seed0" / "probes.json").read_text())
    assert len(probes) == 2 and "pitch/clip@think" in next(iter(probes.values()))
    for png in ("accuracy.png", "losses.png", "readout.png"):
        assert (out / "report" / png).read_bytes()[:4] == b"\x89PNG"
    assert "all questions" in done.stdout and "question type" in done.stdout  # the table on stdout


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
