"""coat-pipe installs beside the torch a researcher already has; constraints.txt pins what is tested."""

import json
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.helpers import REPO

PINNED_ELSEWHERE = ("torch", "transformers", "peft", "deepspeed")


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name: Requirement(r) for r in project["dependencies"]}


def test_core_libraries_are_ranges_and_the_tested_versions_are_constraints():
    requirements = _requirements()
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line)
    for name in PINNED_ELSEWHERE:
        spec = requirements[name].specifier
        assert not any(s.operator == "==" for s in spec), f"{name} is pinned in pyproject.toml"
        assert spec.contains(pins[name]), f"{name}=={pins[name]} from constraints.txt is outside {spec}"
    assert requirements["torch"].specifier.contains("2.11.0+cu130", prereleases=False)  # another CUDA build


@pytest.mark.slow
def test_installing_keeps_the_torch_in_place(tmp_path):
    """pip's own resolver, dry run, in this environment (its torch lies within the declared range)."""
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report), "-e", str(REPO)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    installed = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert installed == ["coat-pipe"], installed
