"""Stop training cleanly on SIGTERM or SIGUSR1: every rank checkpoints at the same step, then exits.

SLURM sends SIGUSR1 ahead of the time limit (`--signal`) and SIGTERM on preemption or `scancel`;
DeepSpeed's launcher passes SIGTERM on to its ranks. A rank that is signalled only sets a flag; the
loop asks all ranks at each optimizer step whether any was signalled, so they agree on where to stop
and save one consistent checkpoint instead of dying mid-step.
"""

from __future__ import annotations

import signal
from types import FrameType

import torch
import torch.distributed as dist

# sysexits' EX_TEMPFAIL: "try again later". The run stopped at a checkpoint; the same command with
# --resume continues it. launch/train.sh reads this code to decide whether to requeue the job.
EXIT_INTERRUPTED = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignal:
    """Installs the handlers; `requested()` is the all-rank answer to "should we stop now?"."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name

    def requested(self, device: torch.device) -> bool:
        """True on every rank when any rank has received a stop signal (one tiny all-reduce)."""
        flag = torch.tensor([0 if self.received is None else 1], device=device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(_worker_id: int) -> None:
    """A DataLoader worker's `worker_init_fn`: the stop signals are for its rank alone.

    SLURM signals every process of a job step, and DeepSpeed's launcher the whole process tree, so the
    workers receive SIGTERM/SIGUSR1 too. By default they die of it, and the rank then fails with
    "DataLoader worker is killed" before it can checkpoint. Ignoring them leaves the stop to the rank,
    which shuts its workers down when it exits."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
