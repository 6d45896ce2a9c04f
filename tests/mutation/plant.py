"""Plant each bug of a list, one at a time, in a copy of the project; run the tests named for it; report
whether they fail. A test counts only once it has been seen failing on the bug it names.

    python tests/mutation/plant.py tests/mutation/method.json            # every bug in the list
    python tests/mutation/plant.py tests/mutation/method.json --only "λ"  # those whose name holds "λ"

Each entry: {"name", "file", "old", "new", "tests"}; `old` must occur exactly once in `file`. The copy
sits in a temporary folder and is imported first (PYTHONPATH), so the checkout itself is never changed.
Exit status 1 when any planted bug passes its tests."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("COAT_PIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
SKIP = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".torch_extensions", "quickstart", "runs", "*.egg-info")


def plant_each(mutations: list[dict], copy: Path) -> list[dict]:
    results = []
    for bug in mutations:
        path = copy / bug["file"]
        original = path.read_text()
        if original.count(bug["old"]) != 1:
            raise SystemExit(f"{bug['name']}: `old` occurs {original.count(bug['old'])} times in {bug['file']}")
        path.write_text(original.replace(bug["old"], bug["new"]))
        env = dict(os.environ, PYTHONPATH=str(copy))
        env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
        # the copy's ../shared/data is not there: point at the checkout's (a skipped test catches nothing)
        env.setdefault("COAT_PIPE_SHARED_DATA", str(SHARED_DATA))
        start = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-rs", "-p", "no:cacheprovider", *bug["tests"]],
            cwd=copy, env=env, capture_output=True, text=True,
        )  # fmt: skip
        path.write_text(original)
        failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
        results.append({"name": bug["name"], "caught": done.returncode != 0, "seconds": round(time.time() - start),
                        "failed": failed[:2], "skipped": skipped[:2]})  # fmt: skip
        print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bugs", type=Path)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    mutations = [m for m in json.loads(args.bugs.read_text()) if args.only in m["name"]]
    with tempfile.TemporaryDirectory(prefix="coat-plant-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=SKIP)
        results = plant_each(mutations, copy)
    missed = [r["name"] for r in results if not r["caught"]]
    print(
        f"{len(results) - len(missed)} of {len(results)} planted bugs caught"
        + (f"; missed: {missed}" if missed else "")
    )
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
