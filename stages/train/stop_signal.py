"""Every rank stops together: on SIGTERM or SIGUSR1 at the same step with a checkpoint, and on a
failed check or a non-finite loss at once, so that no rank waits in a collective for one that stopped.

SLURM sends SIGUSR1 ahead of the time limit (`--signal`) and SIGTERM on preemption or `scancel`;
DeepSpeed's launcher passes SIGTERM on to its ranks. A rank that is signalled only sets a flag; the
loop asks all ranks at each optimizer step whether any was signalled, so they agree on where to stop
and save one consistent checkpoint instead of dying mid-step.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

import torch
import torch.distributed as dist

from store_schema.errors import UserError

T = TypeVar("T")

# sysexits' EX_TEMPFAIL: "try again later". The run stopped at a checkpoint; the same command with
# --resume continues it. launch/train.sh reads this code to decide whether to requeue the job.
EXIT_INTERRUPTED = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignal:
    """Installs the handlers; `requested()` is the all-rank answer to "should we stop now?"."""

    def __init__(self) -> None:
        self.received: str | None = None  # what stopped the run, for its log line
        self._signum = 0  # the signal this rank received (0: none yet), what the ranks agree on
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self._signum, self.received = signum, signal.Signals(signum).name

    def requested(self, device: torch.device) -> bool:
        """True on every rank when any rank has received a stop signal (one tiny all-reduce).

        A scheduler signals the ranks one after another, so at the step where they agree to stop some
        may not have theirs yet; those take the signal another rank received as the reason, so that
        rank 0's "stopped by" line names it either way."""
        flag = torch.tensor([self._signum], device=device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        agreed_signum = int(flag.item())
        if agreed_signum and self.received is None:
            self.received = f"{signal.Signals(agreed_signum).name} (to another rank first)"
        return bool(agreed_signum)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(_worker_id: int) -> None:
    """A DataLoader worker's `worker_init_fn`: the stop signals are for its rank alone.

    SLURM signals every process of a job step, and DeepSpeed's launcher the whole process tree, so the
    workers receive SIGTERM/SIGUSR1 too. By default they die of it, and the rank then fails with
    "DataLoader worker is killed" before it can checkpoint. Ignoring them leaves the stop to the rank,
    which shuts its workers down when it exits. The worker was started with them blocked
    (`stop_signals_blocked`); one that arrived since is pending, and is discarded once ignored here."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Start DataLoader workers in here: they inherit the blocked stop signals until `ignore_stop_signals`.

    Without it a worker is open to them from its start to its `worker_init_fn`, and torch's own SIGTERM
    handler, installed first thing in a worker, dies of a SIGTERM that its parent did not send. A new
    epoch starts new workers, so a preemption at an epoch boundary could kill one and fail the rank
    before its stop checkpoint (the flaky preempted launch test: 3 steps an epoch, signalled after 3).
    A signal the rank receives meanwhile waits until the block ends, or reaches another of its threads,
    and sets the stop flag as ever."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def agreed(check: Callable[[], T], device: torch.device) -> T:
    """Run a check on every rank; if it raises a UserError on any rank, every rank raises, so that no rank
    goes on to wait in a collective for one that has stopped."""
    try:
        result, failure = check(), None
    except UserError as e:
        result, failure = None, e
    ok = torch.tensor([0 if failure else 1], dtype=torch.int32, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    if failure is not None:
        raise failure
    if not ok.item():
        raise UserError("another rank refused the checkpoint (its message says why); stopped")
    return result  # type: ignore[return-value]


def stop_if_not_finite(loss: torch.Tensor, step: int, keys: list[str], rank: int, device: torch.device) -> None:
    """Every rank stops when any rank's loss is NaN or Inf: training on would write a NaN model and report
    success. One tiny all-reduce per micro-step, so that all ranks agree and none waits on the others."""
    finite = torch.isfinite(loss.detach()).to(device=device, dtype=torch.int32).reshape(1)
    agreed = finite.clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
    if bool(agreed.item()):
        return
    if not bool(finite.item()):
        raise UserError(
            f"step {step + 1}: the loss is {loss.item()} on rank {rank}, for the clips {', '.join(keys)}; "
            "stopped without saving (check their targets with `coat-pipe store check`)"
        )
    raise UserError(f"step {step + 1}: another rank's loss is not finite (its message names the clips); stopped")
