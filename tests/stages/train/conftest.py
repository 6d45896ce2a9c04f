import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stages.train.batch import read_samples
from stages.train.targets import TargetSpec
from store_schema.stats import read_stats
from tests.helpers import cli

TINY = ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"]


@pytest.fixture(scope="session")
def specs(extracted_corpus: Path) -> dict[str, TargetSpec]:
    return {e: TargetSpec.from_stats(read_stats(extracted_corpus, e)) for e in ("mel", "pitch")}


@pytest.fixture(scope="session")
def samples(extracted_corpus: Path):
    return read_samples(extracted_corpus, ["mel", "pitch"])


@dataclass
class InProcessRun:
    out: Path
    metrics: list[dict]
    batches: list[dict]


COMPOSED_STEPS = 12  # two epochs of the 18-clip corpus at 2 clips a step: the second starts at step 10
COMPOSED = {
    "backbone": "tiny-qwen2-audio",
    "think_tokens": 4,
    "head_width": 32,
    "distill_weight": 0.5,  # λ and w_e other than 0 and 1, so that dropping either shows
    "expert_weights": {"mel": 2.0, "pitch": 0.25},
}


def composed_train_args(corpus: Path, out: Path, config: Path) -> list:
    """`coat-pipe train` of a one-process run with λ = 0.5 and w = {mel: 2, pitch: 0.25}, two-stage."""
    config.write_text(yaml.safe_dump({"model": COMPOSED}))
    return [
        "train", "--config", config, "--corpus", corpus, "--out", out, "--steps", COMPOSED_STEPS,
        "--batch-size", 2, "--lr", "2e-3", "--workers", 0, "--save-every", 100, "--seed", 3,
    ]  # fmt: skip


def read_run(out: Path) -> InProcessRun:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    batches = [json.loads(line) for line in (out / "batches-rank0.jsonl").read_text().splitlines()]
    return InProcessRun(out, rows, batches)


@pytest.fixture(scope="session")
def composed_run(extracted_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> InProcessRun:
    """The uninterrupted run (in this process): what the loss-composition and resume tests read."""
    root = tmp_path_factory.mktemp("composed")
    cli(*composed_train_args(extracted_corpus, root / "whole", root / "config.yaml"))
    return read_run(root / "whole")
