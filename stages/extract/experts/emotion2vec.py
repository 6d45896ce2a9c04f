"""`emotion2vec` (affect embeddings, 16 kHz → 50 Hz) and `emotion2vec-probs` (9 emotion classes per
clip) from emotion2vec+ through FunASR, an optional extra: pip install 'coat-pipe[emotion2vec]'.

FunASR loads the model directory it is given (`--checkpoint emotion2vec=DIR`, a FunASR model folder
with model.pt and config.yaml) or downloads `iic/emotion2vec_plus_large` from its hub.
Each clip goes through FunASR's own `generate` one at a time, its interface for this model.
Frames are the data2vec encoder's, one per 320 samples.

FunASR brings many dependencies (modelscope, hydra, umap-learn …), so it is an optional extra that
the project's own environment and CI do not install. The tests cover the error for the missing
extra; running a FunASR model directory through these experts is still to be tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.errors import UserError
from stages.extract.experts.base import Expert
from stages.extract.experts.clip_level import ClipExpert

HUB_ID = "iic/emotion2vec_plus_large"
HOP, FIELD = 320, 400
LABELS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")


def _funasr_model(checkpoint: str | None, device: str) -> Any:
    try:
        from funasr import AutoModel
    except ImportError:
        raise UserError(
            "emotion2vec runs through FunASR, which is not installed: pip install 'coat-pipe[emotion2vec]', "
            "or use wav2vec2-emotion"
        ) from None
    try:
        return AutoModel(model=checkpoint or HUB_ID, device=device, disable_update=True)
    except (OSError, AssertionError, KeyError) as err:
        raise UserError(
            f"no emotion2vec model at {checkpoint or HUB_ID} ({err}); pass --checkpoint emotion2vec=DIR"
        ) from None


class Emotion2VecExpert(Expert):
    name = "emotion2vec"
    kind = "embedding"
    sample_rate = 16000
    frame_rate = 16000 / HOP
    dim = 1024
    min_seconds = FIELD / 16000

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32") -> None:
        self.source = checkpoint or HUB_ID
        self.model = _funasr_model(checkpoint, device)

    def frame_times(self, num_frames: int) -> np.ndarray:
        return (np.arange(num_frames) * HOP + FIELD / 2) / self.sample_rate

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for wave in waves:
            result = self.model.generate(wave, granularity="frame", extract_embedding=True)[0]
            out.append(np.asarray(result["feats"], dtype=np.float32))
        return out

    def describe(self) -> dict[str, Any]:
        return {"model": self.source, "revision": self.source, "layer": "frame"}


class Emotion2VecProbsExpert(ClipExpert):
    name = "emotion2vec-probs"
    kind = "probs"
    sample_rate = 16000
    dim = len(LABELS)
    min_seconds = FIELD / 16000

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32") -> None:
        self.source = checkpoint or HUB_ID
        self.model = _funasr_model(checkpoint, device)

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for wave in waves:
            result = self.model.generate(wave, granularity="utterance", extract_embedding=False)[0]
            out.append(np.asarray(result["scores"], dtype=np.float32)[None, :])
        return out

    def describe(self) -> dict[str, Any]:
        return {"model": self.source, "revision": self.source, "layer": "utterance", "options": {"labels": LABELS}}
