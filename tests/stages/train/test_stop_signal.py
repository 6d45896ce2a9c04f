"""A stop signal is only noted when it arrives; the loop asks for it at a step boundary."""

import os
import signal

import pytest
import torch

from stages.train.stop_signal import StopSignal


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
