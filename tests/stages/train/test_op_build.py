"""DeepSpeed's CPU op builds: a lock left by a killed build is refused with its path instead of waited on;
the environment's own ninja comes first on PATH."""

import os
import sys
import time
from pathlib import Path

import pytest

from stages.train.op_build import prefer_environment_ninja, refuse_stale_build_locks
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


def test_the_environments_ninja_comes_first_once(monkeypatch):
    bin_dir = str(Path(sys.executable).parent)
    if not (Path(bin_dir) / "ninja").is_file():
        pytest.skip("no ninja wheel in this environment")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    prefer_environment_ninja()
    prefer_environment_ninja()
    assert os.environ["PATH"] == f"{bin_dir}:/usr/bin:/bin"


def test_cpu_info_is_asked_once_per_process(monkeypatch):
    import cpuinfo

    from stages.train.op_build import answer_cpu_info_once

    calls = []
    monkeypatch.setattr(cpuinfo, "get_cpu_info", lambda: calls.append(1) or {"arch": "X86_64", "flags": ["avx2"]})
    answer_cpu_info_once()
    answer_cpu_info_once()  # idempotent: no cache around the cache
    from deepspeed.ops.op_builder.cpu import FusedAdamBuilder

    builder = FusedAdamBuilder()
    first, second = builder.cxx_args(), builder.cxx_args()
    assert first == second and "-march=native" in first
    assert len(calls) == 1  # four questions (cpu_arch, simd_width, twice), one subprocess's worth
