"""DeepSpeed's CPU ops: none compiled by default, and where a config asks for one, one ninja and no hang.

On the CPU accelerator DeepSpeed would JIT-compile two ops with torch's extension builder on a machine's
first run, about two minutes on 2 cores: its shared-memory all-reduce (`deepspeed_shm_comm`), which only
DeepSpeed-inference's tensor-parallel all-reduce uses, never training's gloo collectives; and its Adam
(`fused_adam`), which on CPU does what torch's AdamW does. `skip_shm_comm_op` and the `torch_adam` default
in `recipe.deepspeed_config` ask for neither. A user's DeepSpeed config may still ask for DeepSpeed's
Adam on CPU (`"torch_adam": false`); then two things can spoil the build:
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


def skip_shm_comm_op() -> None:
    """Tell DeepSpeed its shared-memory comm op is not available here, so `init_distributed` does not build it.

    DeepSpeed builds the op whenever its probe of the machine's ops says it could, and keeps the probe's
    answers in one dict that it documents as editable. The op serves only `inference_all_reduce`
    (DeepSpeed-inference's tensor parallelism); ZeRO's collectives go through the gloo process group."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
