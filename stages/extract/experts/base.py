"""The surface every expert shares: a few attributes, `frame_times`, and a call on a batch of waves."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from store_schema.layout import ExpertSpec


class Expert:
    """A frozen audio model. Takes waves, returns frames; no I/O inside.

    `expert(waves)` takes a list of 1-D float32 arrays at `sample_rate` and returns one
    (T_native, dim) float32 array per wave, frames at `frame_rate` Hz whose centres are
    `frame_times(T_native)` seconds from the start of the clip.
    """

    name: ClassVar[str]
    kind: ClassVar[str]  # embedding | spectrum | probs | logits | pitch
    # What the registry, `extract --list-experts` and the README's table say of it, kept on the class:
    hears: ClassVar[str]  # "pitch", "speech content", …
    model_name: ClassVar[str]  # what computes its frames
    rates: ClassVar[str]  # sample rate -> native frame rate ("16 kHz -> 50 Hz"), or "-> clip"
    weights: ClassVar[str]  # where its weights come from
    needs: ClassVar[str] = "core"  # or the extra that installs what it needs: "extra [emotion2vec]"
    code_version: ClassVar[str] = "1"  # bump when a code change alters the numbers
    sample_rate: int
    frame_rate: float
    dim: int
    min_seconds: float = 0.0  # shorter clips get Status.TOO_SHORT
    # The precision the expert computes in (set by `load_expert`); part of the fingerprint unless the
    # expert computes in float32 whatever it is asked (`dtype_matters = False`).
    dtype_matters: ClassVar[bool] = True
    run_dtype: str = "float32"

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    @classmethod
    def table_row(cls) -> tuple[str, str, str, str, str, str]:
        """(hears, model, rates, kind, needs, weights): its line in `--list-experts`."""
        return (cls.hears, cls.model_name, cls.rates, cls.kind, cls.needs, cls.weights)

    @classmethod
    def build_tiny(cls, folder: Path) -> Path | None:
        """A tiny randomly initialised instance of the real class, saved into `folder` the way the real weights
        are published (tests and `bench extract --tiny`: no download); returns what --checkpoint takes. None
        for an expert without weights."""
        return None

    def frame_times(self, num_frames: int) -> np.ndarray:
        """Centre of each native frame in seconds. Frame i of a centred STFT sits at i / frame_rate."""
        return np.arange(num_frames) / self.frame_rate

    def describe(self) -> dict[str, Any]:
        """model, revision, layer and options: what, beyond the attributes, decides the numbers."""
        raise NotImplementedError

    def spec(self, store_rate: float) -> ExpertSpec:
        d = self.describe()
        return ExpertSpec(
            expert=self.name,
            model=d["model"],
            revision=d["revision"],
            layer=d.get("layer"),
            kind=self.kind,
            sample_rate=self.sample_rate,
            native_rate=self.frame_rate,
            store_rate=store_rate,
            dim=self.dim,
            pooling="pitch-voiced-mean" if self.kind == "pitch" else "mean",
            code_version=self.code_version,
            options={**d.get("options", {}), **({"dtype": self.run_dtype} if self.dtype_matters else {})},
        )
