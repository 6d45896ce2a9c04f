"""A stop signal is only noted when it arrives; the loop asks for it at a step boundary."""

import os
import signal
import time

import pytest
import torch

from stages.train.data import iterate_batches
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


def _signalled_before_its_init(worker_id: int) -> None:
    """A preemption that reaches a new worker before its worker_init_fn has run."""
    os.kill(os.getpid(), signal.SIGTERM)
    ignore_stop_signals(worker_id)


def test_a_stop_signal_before_a_new_workers_init_does_not_kill_it():
    # A new epoch starts new workers, and a scheduler's SIGTERM can land before their worker_init_fn; torch's
    # own handler in the worker then kills it, and the rank fails before its stop checkpoint. The training
    # stream starts its workers with the stop signals blocked, so the signal waits and is then ignored.
    loader = torch.utils.data.DataLoader(
        _WorkerPids(), batch_size=None, num_workers=1, worker_init_fn=_signalled_before_its_init
    )
    pids = [int(p) for p in iterate_batches(loader)]
    assert len(pids) == 40 and len(set(pids)) == 1 and pids[0] != os.getpid()
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the rank's mask is back


def _agree_on_a_stop(rank: int, port: int, answers) -> None:
    """Rank 1 alone has been signalled when the two ranks ask whether to stop."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    stop = StopSignal()
    try:
        if rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        answers.put((rank, stop.requested(torch.device("cpu")), stop.received))
    finally:
        stop.restore()
        dist.destroy_process_group()


@pytest.mark.slow  # two gloo ranks in child processes: seconds of start-up
def test_a_rank_not_yet_signalled_stops_with_the_signal_another_rank_received():
    # A scheduler signals the ranks one by one: at the agreed step rank 0 may not have its SIGTERM yet,
    # and its "stopped by" line must still name the signal, not guess.
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    answers = context.Queue()
    mp.start_processes(_agree_on_a_stop, args=(port, answers), nprocs=2, start_method="spawn")
    got = dict((rank, (stop, received)) for rank, stop, received in (answers.get(timeout=60) for _ in range(2)))
    assert got == {0: (True, "SIGTERM (to another rank first)"), 1: (True, "SIGTERM")}
