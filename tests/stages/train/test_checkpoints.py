"""Checkpoints a cluster can afford: the newest `keep_checkpoints` tags stay, never the ones `latest` and `best`
name, and older ones go only after a newer one is published, so a kill in between resumes from a verified tag."""

import json

import pytest

from stages.train import checkpoint
from stages.train.checkpoint import LATEST, mark_best, prune_checkpoints
from tests.helpers import cli

TRAIN = ["train", "--backbone", "tiny-qwen2-audio", "--think-tokens", 2, "--batch-size", 2, "--workers", 0]


def _tags(run) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step*"))


def test_pruning_keeps_the_newest_and_what_latest_and_best_name(tmp_path):
    for step in range(1, 6):
        (tmp_path / f"step{step:07d}").mkdir()
    (tmp_path / "step0000006.tmp").mkdir()  # not a tag: left alone
    (tmp_path / LATEST).write_text("step0000004")  # e.g. a newer tag being written while latest is older
    mark_best(tmp_path, "step0000002")
    deleted = prune_checkpoints(tmp_path, keep=1)
    assert deleted == ["step0000001", "step0000003"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "step0000002", "step0000004", "step0000005", "step0000006.tmp",
    ]  # fmt: skip


@pytest.mark.slow  # end to end; the fast lane keeps to 2 minutes
def test_a_run_keeps_its_newest_checkpoints(extracted_corpus, tmp_path):
    run = tmp_path / "run"
    cli(*TRAIN, "--corpus", extracted_corpus, "--out", run, "--steps", 4, "--save-every", 1, "--keep-checkpoints", 2)
    assert _tags(run) == ["step0000003", "step0000004"]
    assert (run / "checkpoints" / LATEST).read_text() == "step0000004"


@pytest.mark.slow  # end to end; the fast lane keeps to 2 minutes
def test_killed_between_publishing_and_deleting_resumes_from_a_verified_tag(extracted_corpus, tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = [
        *TRAIN,
        "--corpus",
        extracted_corpus,
        "--out",
        run,
        "--steps",
        4,
        "--save-every",
        1,
        "--keep-checkpoints",
        1,
    ]
    calls = {"n": 0}
    real = checkpoint.prune_checkpoints

    def killed_on_the_second(checkpoints, keep):
        calls["n"] += 1
        if calls["n"] == 2:  # step 2 is published (manifest, then latest): the process dies before deleting
            raise KeyboardInterrupt
        return real(checkpoints, keep)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "prune_checkpoints", killed_on_the_second)
        cli(*args, expect=130)  # the process "dies" (Ctrl-C's exit status) right after publishing step 2
    assert _tags(run) == ["step0000001", "step0000002"] and (run / "checkpoints" / LATEST).read_text() == "step0000002"
    result = cli(*args, "--resume")
    assert "resumed from step0000002: step 2" in result.output
    assert _tags(run) == ["step0000004"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
