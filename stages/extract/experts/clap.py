"""`clap`: sound and music semantics from CLAP's audio tower (transformers' ClapModel), 48 kHz → clip.

The audio embedding comes from `get_audio_features`, which projects into the joint audio-text space.
Clips are cut into 10 s windows, because CLAP's unfused checkpoints crop longer input at random.
Each window is repeat-padded and embedded, and the clip keeps the mean of its windows' embeddings,
weighted by each window's length. The result is the same on every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import ClapFeatureExtractor, ClapModel

from stages.extract.experts.clip_level import ClipExpert
from stages.extract.experts.hf_loading import check_model_type, load_pretrained, revision_of

WINDOW_SECONDS = 10


class ClapExpert(ClipExpert):
    name = "clap"
    kind = "embedding"
    sample_rate = 48000
    hub_id = "laion/clap-htsat-unfused"

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> None:
        self.source = checkpoint or self.hub_id
        check_model_type(self.source, ("clap",), self.name)
        self.model = load_pretrained(ClapModel, self.source, self.name, self.hub_id, device, dtype, trust_remote_code)
        try:
            self.features = ClapFeatureExtractor.from_pretrained(self.source)
        except OSError:
            self.features = ClapFeatureExtractor()
        self.features.truncation, self.features.padding = "rand_trunc", "repeatpad"  # windows are ≤ 10 s
        self.dim = int(self.model.config.projection_dim)
        self.device, self.dtype = torch.device(device), next(self.model.parameters()).dtype
        self._revision = revision_of(self.model, self.source)

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        span = WINDOW_SECONDS * self.sample_rate
        pieces = [[w[s : s + span] for s in range(0, max(1, len(w)), span)] for w in waves]
        flat = [p for clip in pieces for p in clip]
        inputs = self.features(flat, sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["input_features"] = inputs["input_features"].to(self.dtype)
        embeddings = self.model.get_audio_features(**inputs)
        embeddings = getattr(embeddings, "pooler_output", embeddings).float().cpu().numpy()
        out, at = [], 0
        for clip in pieces:
            weights = np.array([len(p) for p in clip], dtype=np.float64)
            out.append((weights @ embeddings[at : at + len(clip)] / weights.sum())[None, :].astype(np.float32))
            at += len(clip)
        return out

    def describe(self) -> dict[str, Any]:
        return {"model": self.source, "revision": self._revision, "layer": "audio_projection"}
