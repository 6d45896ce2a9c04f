"""A lock left by a killed build of DeepSpeed's CPU op is refused with its path, instead of waited on."""

import os
import time

import pytest

from stages.train.op_build_lock import refuse_stale_build_locks
from store_schema.errors import UserError


def test_a_lock_older_than_any_build_is_named_and_a_fresh_one_is_waited_for(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    refuse_stale_build_locks()  # nothing built yet, no lock: nothing to refuse
    lock = tmp_path / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir(exist_ok=True)
    lock.touch()
    refuse_stale_build_locks()  # a build in progress in another process: wait for it, as torch does
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    with pytest.raises(UserError) as refused:
        refuse_stale_build_locks()
    assert str(lock) in str(refused.value) and "60 min ago" in str(refused.value)
