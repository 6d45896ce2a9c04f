"""`coat-pipe train` never hangs, never trains on through bad data, never overwrites a run's record,
and never unpickles what a run directory was handed."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from tests.helpers import cli, copy_corpus, subprocess_env
from tests.refusals import conversation, error_line, rewrite_tar, tree_state

COAT = Path(sys.executable).with_name("coat-pipe")
TRAIN = ["train", "--backbone", "tiny-qwen2-audio", "--think-tokens", "4", "--batch-size", "2", "--workers", "0"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """12 clips in 2 shards, mel extracted."""
    root = tmp_path_factory.mktemp("small") / "corpus"
    cli("synth", "--out", root, "--clips", 12, "--shard-size", 6, "--seed", 5)
    cli("extract", "--corpus", root, "--expert", "mel", "--workers", 0, "--no-progress")
    return root


@pytest.fixture(scope="module")
def finished(small, tmp_path_factory):
    """A finished 2-step run with a checkpoint at each step."""
    run = tmp_path_factory.mktemp("finished") / "run"
    cli(*TRAIN, "--corpus", small, "--out", run, "--steps", 2, "--save-every", 1)
    return run


def _key(corpus: Path, shard: int, index: int) -> str:  # the key of sample `index` of a shard
    return zarr.open_array(corpus / f"train-{shard:06d}.zarr" / "keys")[:].tolist()[index]


def _train_in_child(corpus: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """`coat-pipe train` with a DataLoader worker, in its own process: a hang shows as TimeoutExpired."""
    command = [str(COAT), *TRAIN[:-1], "1", "--corpus", str(corpus), "--out", str(out), "--steps", "6", *extra]
    env = subprocess_env(DS_ACCELERATOR="cpu", COLUMNS="300")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)


@pytest.mark.slow
@pytest.mark.parametrize(
    "entry",
    [conversation(("user", "Which?")), b"{not json"],
    ids=["no-assistant-turn", "invalid-json"],
)
def test_a_bad_sample_ends_training_with_one_line_not_a_hang(small, tmp_path, entry):
    """Every sample's json is bad, so every epoch meets one in its first batch. Before the fix the first
    case spun forever (the StopIteration ended each epoch at once, no step was ever logged) and the second
    printed a worker's traceback and then hung at exit (the workers ignore SIGTERM): both timed out here."""
    corpus = copy_corpus(small, tmp_path / "c")
    keys = {}
    for shard in (0, 1):
        keys[shard] = zarr.open_array(corpus / f"train-{shard:06d}.zarr" / "keys")[:].tolist()
        rewrite_tar(corpus / f"train-{shard:06d}.tar", {f"{key}.json": entry for key in keys[shard]})
    done = _train_in_child(corpus, tmp_path / "run")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert any(f"{corpus / f'train-{s:06d}.tar'}: {key}:" in errors[0] for s in keys for key in keys[s]), errors[0]
    assert not (tmp_path / "run" / "final").exists()


def test_nan_targets_name_the_clip(small, tmp_path):
    corpus = copy_corpus(small, tmp_path / "c")
    frames = zarr.open_array(corpus / "train-000000.zarr" / "mel" / "frames", mode="r+")
    block = frames[:]
    block[:] = np.nan
    frames[:] = block
    result = cli(*TRAIN, "--corpus", corpus, "--out", tmp_path / "run", "--steps", 3, expect=2)
    line = error_line(result, 2, "train-000000.tar", "'mel' targets hold NaN or Inf")
    assert any(_key(corpus, 0, i) in line for i in range(6))
    assert not (tmp_path / "run" / "final").exists()


def test_a_non_finite_loss_stops_the_run_with_the_step_and_clips(small, tmp_path):
    result = cli(*TRAIN, "--corpus", small, "--out", tmp_path / "run", "--steps", 20, "--lr", "1e38", expect=2)
    line = error_line(result, 2, "the loss is", "for the clips", "stopped without saving")
    assert "step " in line and not (tmp_path / "run" / "final").exists()
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rows)  # nothing non-finite was logged as a step


def _resume_refused(finished: Path, small: Path, *args: object, names: tuple = ()) -> str:
    before = tree_state(finished)
    line = error_line(cli(*TRAIN, "--corpus", small, "--out", finished, *args, expect=2), 2, *names)
    assert tree_state(finished) == before
    return line


def test_resume_with_other_settings_is_refused_naming_each(finished, small):
    line = _resume_refused(finished, small, "--steps", 2, "--resume", "--lr", "0.1", "--batch-size", 3)
    assert "lr: 0.0002 → 0.1" in line and "batch_size: 2 → 3" in line


def test_resume_may_change_steps_and_cadence_and_keeps_the_first_record(finished, small, tmp_path):
    run = copy_corpus(finished, tmp_path / "run")
    config = (run / "config.yaml").read_bytes()
    cli(*TRAIN, "--corpus", small, "--out", run, "--steps", 3, "--save-every", 5, "--resume")
    assert (run / "config.yaml").read_bytes() == config
    assert json.loads((run / "resumes.jsonl").read_text()) == {
        "step": 2,
        "changed": {"out": str(run), "save_every": 5, "steps": 3},
    }
    assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_run_directory_is_never_started_over(finished, small, tmp_path):
    _resume_refused(finished, small, "--steps", 2, names=(finished, "is not empty", "--resume"))
    gone = copy_corpus(finished, tmp_path / "gone")
    import shutil

    shutil.rmtree(gone / "checkpoints")
    for flags in ([], ["--resume"]):
        before = tree_state(gone)
        result = cli(*TRAIN, "--corpus", small, "--out", gone, "--steps", 2, *flags, expect=2)
        error_line(result, 2, gone)
        assert tree_state(gone) == before


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def _tampered(finished: Path, tmp_path: Path, tamper) -> Path:
    run = copy_corpus(finished, tmp_path / "run")
    tamper(run / "checkpoints", run / "checkpoints" / "step0000002")
    return run


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        (
            lambda c, t: (t / "mp_rank_00_model_states.pt").write_bytes(pickle.dumps(_Planted(t.parent / "ran"))),
            "differs from what was saved",
        ),
        (lambda c, t: (t / "rng-rank0.pt").write_bytes(pickle.dumps(_Planted(t.parent / "ran"))), "does not list"),
        (
            lambda c, t: (t / "mp_rank_00_model_states.pt").write_bytes(
                (t / "mp_rank_00_model_states.pt").read_bytes()[:100]
            ),
            "differs from what was saved",
        ),
        (lambda c, t: (t / "rng-rank0.json").unlink(), "missing from checkpoint"),
        (lambda c, t: (c / "latest").write_text("step0000009"), "names checkpoint 'step0000009', which does not exist"),
        (lambda c, t: (t / "manifest.json").unlink(), "missing or unreadable"),
    ],
    ids=["planted-model-state", "planted-rng-pickle", "truncated-state", "missing-rng", "missing-tag", "no-manifest"],
)
def test_a_damaged_or_planted_checkpoint_is_refused_before_anything_is_unpickled(
    finished, small, tmp_path, tamper, said
):
    run = _tampered(finished, tmp_path, tamper)
    before = tree_state(run)
    result = cli(*TRAIN, "--corpus", small, "--out", run, "--steps", 3, "--resume", expect=2)
    error_line(result, 2, said)
    assert tree_state(run) == before and not (run / "checkpoints" / "ran").exists()


def test_latest_is_published_after_every_file_of_the_checkpoint(finished):
    checkpoints = finished / "checkpoints"
    tag = (checkpoints / "latest").read_text()
    folder = checkpoints / tag
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    newest = max(p.stat().st_mtime_ns for p in folder.rglob("*"))
    assert (checkpoints / "latest").stat().st_mtime_ns >= newest
    assert yaml.safe_load((finished / "config.yaml").read_text())["steps"] == 2


def test_edited_logs_are_named_on_resume(finished, small, tmp_path):
    run = copy_corpus(finished, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write("{half a row\n")
    before = tree_state(run)
    result = cli(*TRAIN, "--corpus", small, "--out", run, "--steps", 3, "--resume", expect=2)
    error_line(result, 2, run / "metrics.jsonl", "line 3")
    assert tree_state(run) == before


def test_a_damaged_bundle_is_named(finished, small, tmp_path):
    """Checked against its manifest before anything loads (an altered head file was loaded silently, or
    failed deep in torch); a bundle without one (from before manifests) still names what is damaged."""
    run = copy_corpus(finished, tmp_path / "run")
    heads = run / "final" / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:-16] + bytes(16))
    args = ["--run", run, "--benchmark", "synth", "--manifest", small, "--out", tmp_path / "eval", "--no-progress"]
    error_line(cli("eval", *args, expect=2), 2, heads, "differs from what was written")
    (run / "final" / "manifest.json").unlink()
    (run / "final" / "config.yaml").write_text("model: [unclosed\n")
    result = cli("eval", *args, expect=2)
    error_line(result, 2, run / "final", "damaged model bundle")
    assert "loaded unverified" in result.output
    assert not (tmp_path / "eval").exists()


def test_a_held_out_sample_without_an_answer_is_unanswerable_not_a_crash(small, tmp_path):
    from stages.lab.synth_benchmark import load_synth

    corpus = copy_corpus(small, tmp_path / "c")
    key = _key(corpus, 0, 1)
    rewrite_tar(corpus / "train-000000.tar", {f"{key}.json": conversation(("user", "Which?"))})
    items = {item.id: item for item in load_synth(corpus)}
    assert len(items) == 12 and "no assistant turn" in items[key].problem
    assert sum(item.problem is not None for item in items.values()) == 1


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("log_every=0", "log_every"),
        ("save_every=0", "save_every"),
        ("num_workers=-1", "num_workers"),
        ("shuffle_window=0", "shuffle_window"),
        ("lr=.nan", "lr"),
        ("lr=0", "lr"),
        ("min_lr_ratio=2", "min_lr_ratio"),
        ("model.lora_dropout=1.5", "lora_dropout"),
        ("model.lora_targets=[]", "lora_targets"),
        ("model.think_layer=99", "think_layer"),
        ("model.head_heads=3", "head_heads"),
        ("model.expert_weights={mel: -1}", "expert_weights"),
        ("batch_seconds=.inf", "batch_seconds"),
    ],
)
def test_a_setting_out_of_range_stops_before_anything_is_written(small, tmp_path, setting, says):
    run, flags = tmp_path / "run", TRAIN[:-2]  # without --workers: a flag would win over --set num_workers
    result = cli(*flags, "--corpus", small, "--out", run, "--steps", 2, "--set", setting, expect=2)
    error_line(result, 2, says)
    assert not run.exists()


@pytest.mark.slow
def test_a_no_think_baseline_trains_on_a_corpus_with_no_targets_yet(synth_corpus, tmp_path):
    """A --no-think run reads no expert: it must not open the shards' stores, which do not exist yet."""
    before = tree_state(synth_corpus)
    result = cli(*TRAIN, "--corpus", synth_corpus, "--out", tmp_path / "run", "--steps", 1, "--no-think")
    assert "trained 1 steps" in result.output and tree_state(synth_corpus) == before
