"""Untrained bundles of every tiny backbone (saved and loaded the way training writes them); MMAU metadata."""

from pathlib import Path

import pytest

from stages.train.bundle import save_bundle
from stages.train.config import ModelConfig
from stages.train.model import CoatModel
from stages.train.targets import TargetSpec
from store_schema.stats import read_stats
from tests.helpers import shared_data


def _specs(corpus: Path) -> dict[str, TargetSpec]:
    return {e: TargetSpec.from_stats(read_stats(corpus, e)) for e in ("mel", "pitch")}


@pytest.fixture(scope="session")
def make_run(extracted_corpus, tmp_path_factory):
    """make_run(backbone, no_think=False) -> a run directory holding final/, built once per session."""
    made: dict[tuple[str, bool], Path] = {}

    def make(backbone: str, no_think: bool = False) -> Path:
        if (backbone, no_think) not in made:
            run = tmp_path_factory.mktemp(f"run-{backbone}-{'base' if no_think else 'coat'}")
            config = ModelConfig(backbone=backbone, think_tokens=8, no_think=no_think)
            save_bundle(CoatModel.build(config, {} if no_think else _specs(extracted_corpus)), run / "final")
            made[(backbone, no_think)] = run
        return made[(backbone, no_think)]

    return make


@pytest.fixture(scope="session")
def mmau_manifest() -> Path:
    """The MMAU test-mini metadata from ../shared/data (see its README)."""
    return shared_data("benchmarks", "mmau-test-mini.json")
