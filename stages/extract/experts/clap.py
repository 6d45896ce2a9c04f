"""`clap`: sound and music semantics from CLAP's audio tower (transformers' ClapModel), 48 kHz → clip.

The audio embedding comes from `get_audio_features`, which projects into the joint audio-text space.
Clips are cut into 10 s windows, because CLAP's unfused checkpoints crop longer input at random.
Each window is repeat-padded and embedded, and the clip keeps the mean of its windows' embeddings,
weighted by each window's length. The result is the same on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import ClapFeatureExtractor, ClapModel

from stages.extract.experts.clip_level import ClipExpert
from stages.extract.experts.hf_loading import HubExpert

WINDOW_SECONDS = 10


class ClapExpert(ClipExpert, HubExpert):
    name = "clap"
    kind = "embedding"
    hears, model_name, rates = "sound/music semantics", "ClapModel audio tower", "48 kHz -> clip"
    weights = "hub laion/clap-htsat-unfused"
    sample_rate = 48000
    hub_id = "laion/clap-htsat-unfused"
    model_types = ("clap",)

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> None:
        self.model = self.load_model(ClapModel, checkpoint, device, dtype, trust_remote_code)
        try:
            self.features = ClapFeatureExtractor.from_pretrained(self.source)
        except OSError:
            self.features = ClapFeatureExtractor()
        self.features.truncation, self.features.padding = "rand_trunc", "repeatpad"  # windows are ≤ 10 s
        self.dim = int(self.model.config.projection_dim)

    @classmethod
    def build_tiny(cls, folder: Path) -> Path:
        from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

        audio = ClapAudioConfig(
            depths=[1, 1],
            num_attention_heads=[1, 2],
            patch_embeds_hidden_size=16,
            hidden_size=32,
            projection_dim=24,
            spec_size=256,
            num_mel_bins=64,
            window_size=8,
            mlp_ratio=2.0,
        )
        text = ClapTextConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            projection_dim=24,
            max_position_embeddings=64,
        )
        config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=24)
        ClapModel(config).save_pretrained(folder)
        ClapFeatureExtractor(feature_size=64).save_pretrained(folder)
        return folder

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
