"""`wav2vec2-emotion`: affect as class probabilities per clip, from a transformers audio-classification
model (default superb/wav2vec2-base-superb-er: neutral, happy, angry, sad)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import AutoModelForAudioClassification

from stages.extract.experts.clip_level import ClipExpert
from stages.extract.experts.hf_loading import load_pretrained, revision_of
from stages.extract.experts.speech_encoder import _feature_extractor_normalises


class Wav2Vec2EmotionExpert(ClipExpert):
    name = "wav2vec2-emotion"
    kind = "probs"
    sample_rate = 16000
    min_seconds = 0.025
    hub_id = "superb/wav2vec2-base-superb-er"

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> None:
        self.source = checkpoint or self.hub_id
        self.model = load_pretrained(
            AutoModelForAudioClassification, self.source, self.name, self.hub_id, device, dtype, trust_remote_code
        )
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.dim = len(self.labels)
        self.do_normalize = _feature_extractor_normalises(self.source)
        self.device, self.dtype = torch.device(device), next(self.model.parameters()).dtype
        self._revision = revision_of(self.model, self.source)

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for wave in waves:  # one clip per forward: base checkpoints normalise over time (padding would leak)
            x = ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)) if self.do_normalize else wave
            logits = self.model(torch.from_numpy(x.astype(np.float32))[None].to(self.device, self.dtype)).logits
            out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float32))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.source,
            "revision": self._revision,
            "layer": "classifier",
            "options": {"labels": self.labels},
        }
