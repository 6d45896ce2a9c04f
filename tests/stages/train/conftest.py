from pathlib import Path

import pytest

from stages.train.batch import read_samples
from stages.train.targets import TargetSpec
from store_schema.stats import read_stats

TINY = ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"]


@pytest.fixture(scope="session")
def specs(extracted_corpus: Path) -> dict[str, TargetSpec]:
    return {e: TargetSpec.from_stats(read_stats(extracted_corpus, e)) for e in ("mel", "pitch")}


@pytest.fixture(scope="session")
def samples(extracted_corpus: Path):
    return read_samples(extracted_corpus, ["mel", "pitch"])
