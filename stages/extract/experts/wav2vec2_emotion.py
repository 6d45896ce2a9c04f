"""`wav2vec2-emotion`: affect as class probabilities per clip, from a transformers audio-classification
model (default superb/wav2vec2-base-superb-er: neutral, happy, angry, sad)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForAudioClassification

from stages.extract.experts.clip_level import ClipExpert
from stages.extract.experts.hf_loading import HubExpert, feature_extractor_normalises
from stages.extract.experts.speech_encoder import TINY_SPEECH


class Wav2Vec2EmotionExpert(ClipExpert, HubExpert):
    name = "wav2vec2-emotion"
    kind = "probs"
    hears, model_name, rates = "affect", "audio-classification model", "16 kHz -> clip"
    weights = "hub superb/wav2vec2-base-superb-er"
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
        self.model = self.load_model(AutoModelForAudioClassification, checkpoint, device, dtype, trust_remote_code)
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.dim = len(self.labels)
        self.do_normalize = feature_extractor_normalises(self.source)

    @classmethod
    def build_tiny(cls, folder: Path) -> Path:
        from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

        labels = ["neu", "hap", "ang", "sad"]
        config = Wav2Vec2Config(
            **TINY_SPEECH, num_labels=4, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
        )
        Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(sampling_rate=cls.sample_rate, do_normalize=True).save_pretrained(folder)
        return folder

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
