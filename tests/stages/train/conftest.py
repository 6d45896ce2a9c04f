import json
from pathlib import Path

import pytest

from stages.train.batch import read_samples
from stages.train.targets import TargetSpec

TINY = ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"]


@pytest.fixture(scope="session")
def specs(extracted_corpus: Path) -> dict[str, TargetSpec]:
    return {
        e: TargetSpec.from_stats(json.loads((extracted_corpus / "stats" / f"{e}.json").read_text()))
        for e in ("mel", "pitch")
    }


@pytest.fixture(scope="session")
def samples(extracted_corpus: Path):
    return read_samples(extracted_corpus, ["mel", "pitch"])
