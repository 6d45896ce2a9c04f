"""A stop signal is only noted when it arrives; the loop asks for it at a step boundary."""

import os
import signal
import time

import pytest
import torch

from stages.train.stop_signal import StopSignal, ignore_stop_signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_is_noted_not_fatal_and_handlers_are_restored(sig):
    before = signal.getsignal(sig)
    stop = StopSignal()
    try:
        assert not stop.requested(torch.device("cpu"))
        os.kill(os.getpid(), sig)  # delivered to this (main) thread before kill returns to Python code
        assert stop.requested(torch.device("cpu")) and stop.received == sig.name
    finally:
        stop.restore()
    assert signal.getsignal(sig) == before


class _WorkerPids(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int) -> int:
        return os.getpid()


def test_dataloader_workers_outlive_the_stop_signals():
    # SLURM and DeepSpeed's launcher signal the whole process tree; a worker that died of it would take
    # its rank down ("DataLoader worker is killed") before the rank could checkpoint.
    loader = torch.utils.data.DataLoader(
        _WorkerPids(), batch_size=None, num_workers=1, worker_init_fn=ignore_stop_signals
    )
    pids = iter(loader)
    worker = int(next(pids))
    os.kill(worker, signal.SIGTERM)
    os.kill(worker, signal.SIGUSR1)
    time.sleep(0.5)
    assert [int(p) for p in pids] == [worker] * 39  # every item still served by the same, living worker
