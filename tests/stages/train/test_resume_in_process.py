"""Exact resume in one process, in seconds: a run stopped mid-way through its second epoch and resumed
sees the same clips in the same order, with the same random draws (dropout), as the run never stopped.
(The launch tests repeat this with SIGKILL and 2 DeepSpeed ranks, in the slow lane.)"""

import pytest

from stages.train.stop_signal import EXIT_INTERRUPTED, StopSignal
from tests.helpers import cli
from tests.stages.train.conftest import COMPOSED_STEPS, composed_train_args, read_run

STOP_AT = 10  # right after the first step of the second epoch: its position and the epoch number must both survive


def test_stopped_then_resumed_equals_the_run_never_stopped(composed_run, extracted_corpus, tmp_path, monkeypatch):
    asked = {"steps": 0}

    def stop_at_step(self, device):  # the rank is asked once per optimizer step; "signalled" at STOP_AT
        asked["steps"] += 1
        return asked["steps"] >= STOP_AT

    args = composed_train_args(extracted_corpus, tmp_path / "cut", tmp_path / "config.yaml")
    with monkeypatch.context() as patch:
        patch.setattr(StopSignal, "requested", stop_at_step)
        cli(*args, expect=EXIT_INTERRUPTED)
    cut = read_run(tmp_path / "cut")
    assert len(cut.metrics) == STOP_AT and not (tmp_path / "cut" / "final").exists()

    cli(*args, "--resume")
    resumed, whole = read_run(tmp_path / "cut"), composed_run
    assert [b["epoch"] for b in whole.batches][STOP_AT - 2 : STOP_AT] == [0, 1]  # 9 steps an epoch
    assert resumed.batches == whole.batches  # the same clips, step for step, epoch numbers included
    assert [m["step"] for m in resumed.metrics] == list(range(1, COMPOSED_STEPS + 1))
    for got, want in zip(resumed.metrics, whole.metrics):
        for key in ("loss", "lm", "mel", "pitch"):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), (got["step"], key)
