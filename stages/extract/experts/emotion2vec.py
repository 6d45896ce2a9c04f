"""`emotion2vec` (affect embeddings, 16 kHz → 50 Hz) and `emotion2vec-probs` (the emotion classes per
clip) from emotion2vec+ through FunASR, an optional extra: pip install 'coat-pipe[emotion2vec]'.

FunASR loads a model directory in its own format (`--checkpoint emotion2vec=DIR` holding
config.yaml and model.pt), or downloads `iic/emotion2vec_plus_large` from its hub when no directory
is given. Each clip goes through FunASR's own `generate`, one at a time, which is its interface for
this model. Frames are the data2vec encoder's, one per 320 samples. FunASR runs the model in
float32 whatever `--dtype` says.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from stages.extract.experts.base import Expert
from stages.extract.experts.clip_level import ClipExpert
from stages.extract.experts.hf_loading import weights_digest
from store_schema.errors import UserError

HUB_ID = "iic/emotion2vec_plus_large"
HOP, FIELD = 320, 400


def _funasr_model(checkpoint: str | None, device: str, trust_remote_code: bool) -> Any:
    """FunASR's AutoModel for a model folder (or the hub id). FunASR merges the folder's config.yaml into its
    arguments, and a folder may ask for `trust_remote_code` there (FunASR then imports its code and installs
    its requirements.txt). The arguments given here win that merge, so --trust-remote-code alone decides."""
    if checkpoint is not None and not (Path(checkpoint) / "config.yaml").is_file():
        raise UserError(
            f"no emotion2vec model at {checkpoint} (a FunASR model folder with config.yaml and model.pt); "
            f"download {HUB_ID} where there is network access and pass --checkpoint emotion2vec=DIR"
        )
    try:
        from funasr import AutoModel
    except ImportError:
        raise UserError(
            "emotion2vec runs through FunASR, which is not installed: pip install 'coat-pipe[emotion2vec]', "
            "or use wav2vec2-emotion"
        ) from None
    try:
        return AutoModel(
            model=checkpoint or HUB_ID,
            device=device,
            disable_update=True,
            disable_pbar=True,
            disable_log=True,
            trust_remote_code=trust_remote_code,
        )
    except Exception as err:  # noqa: BLE001 - FunASR raises whatever a malformed folder leads to
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{checkpoint or HUB_ID}: not a usable emotion2vec model ({reason})") from None


def _revision(source: str) -> str:
    """A model folder's weights and config (config.yaml is not a weight file, so it is added), else the hub id."""
    folder = Path(source)
    if not folder.is_dir():
        return source
    config = folder / "config.yaml"
    text = weights_digest(folder) + (config.read_text() if config.is_file() else "")
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


class Emotion2VecExpert(Expert):
    name = "emotion2vec"
    kind = "embedding"
    dtype_matters = False  # FunASR runs float32
    sample_rate = 16000
    frame_rate = 16000 / HOP
    min_seconds = FIELD / 16000

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> None:
        self.source = checkpoint or HUB_ID
        self.model = _funasr_model(checkpoint, device, trust_remote_code)
        self.dim = int(self.model.model.cfg.get("embed_dim"))

    def frame_times(self, num_frames: int) -> np.ndarray:
        return (np.arange(num_frames) * HOP + FIELD / 2) / self.sample_rate

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for wave in waves:
            result = self.model.generate(wave, granularity="frame", extract_embedding=True)[0]
            out.append(np.asarray(result["feats"], dtype=np.float32))
        return out

    def describe(self) -> dict[str, Any]:
        return {"model": self.source, "revision": _revision(self.source), "layer": "frame"}


class Emotion2VecProbsExpert(ClipExpert):
    name = "emotion2vec-probs"
    kind = "probs"
    dtype_matters = False
    sample_rate = 16000
    min_seconds = FIELD / 16000

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> None:
        self.source = checkpoint or HUB_ID
        self.model = _funasr_model(checkpoint, device, trust_remote_code)
        tokenizer = self.model.kwargs.get("tokenizer")
        if tokenizer is None or getattr(self.model.model, "proj", None) is None:
            raise UserError(f"{self.source}: this emotion2vec model has no classifier; use the `emotion2vec` expert")
        self.labels = [t for t in tokenizer.token_list if not t.startswith("unuse")]  # FunASR drops "unuse*"
        self.dim = len(self.labels)

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for wave in waves:
            result = self.model.generate(wave, granularity="utterance", extract_embedding=False)[0]
            out.append(np.asarray(result["scores"], dtype=np.float32)[None, :])
        return out

    def describe(self) -> dict[str, Any]:
        options = {"labels": self.labels}
        return {"model": self.source, "revision": _revision(self.source), "layer": "utterance", "options": options}
