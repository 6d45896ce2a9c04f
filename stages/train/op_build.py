"""DeepSpeed's CPU ops, compiled on first use: one ninja for every process, and a refusal instead of a hang.

On the CPU accelerator DeepSpeed compiles its shared-memory all-reduce op (`deepspeed_shm_comm`) and its
Adam (`fused_adam`) with torch's extension builder the first time a machine runs them, and reuses them
after. Two things can spoil that:
- torch runs the first `ninja` on PATH. An environment with the `ninja` wheel next to a system ninja of
  another version runs one or the other depending on PATH (a launched rank, a test, a shell), and
  ninja 1.12+ and 1.11 cannot read each other's build log, so each discards the other's build: two
  minutes of compiling on 2 cores, every time the process kind changes.
- The builder guards a build with a lock file, and every later process waits for that file to go away,
  with no time limit; a build that was killed leaves the file behind, and every run after it then
  waits forever.
And one thing costs time on every start: loading a built op, the CPU builder still asks py-cpuinfo for
the CPU (twice per op, for `-march` and the SIMD width), and each answer is a subprocess of about a
second; `answer_cpu_info_once` keeps the first answer for the process.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

from store_schema.errors import UserError

CPU_OPS = ("deepspeed_shm_comm", "fused_adam")  # what a CPU training run builds
STALE_AFTER_S = 15 * 60  # a build takes one to two minutes on 2 cores; a lock this old has no builder


def extension_build_dir(name: str) -> Path:
    """Where torch's extension builder compiles `name` (its TORCH_EXTENSIONS_DIR rule)."""
    from torch.utils.cpp_extension import _get_build_directory

    return Path(_get_build_directory(name, verbose=False))


def refuse_stale_build_locks(names: tuple[str, ...] = CPU_OPS, stale_after_s: float = STALE_AFTER_S) -> None:
    """Raise UserError naming the lock file if a build of one of `names` was left locked `stale_after_s` ago."""
    for name in names:
        lock = extension_build_dir(name) / "lock"
        try:
            age = time.time() - os.stat(lock).st_mtime
        except FileNotFoundError:
            continue
        if age <= stale_after_s:
            continue  # another process is building it now
        raise UserError(
            f"{lock}: left by a build of DeepSpeed's {name} op that was killed {age / 60:.0f} min ago; "
            "every run would wait on it forever. Delete it and run again (the op is rebuilt once)."
        )


def prefer_environment_ninja() -> None:
    """Put this environment's own `ninja` (the wheel, beside the interpreter) first on PATH, so the op is
    built and found again by the same ninja however the process was started."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if (Path(bin_dir) / "ninja").is_file() and path.split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}" if path else bin_dir


def answer_cpu_info_once() -> None:
    """Make py-cpuinfo's `get_cpu_info` answer from memory after its first call in this process (the CPU
    does not change while it runs). DeepSpeed's builder imports the function at each call, so replacing
    the module's attribute is enough; the compile flags it derives are the same."""
    import cpuinfo

    if not hasattr(cpuinfo.get_cpu_info, "cache_info"):
        cpuinfo.get_cpu_info = functools.cache(cpuinfo.get_cpu_info)
