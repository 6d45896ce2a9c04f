"""`whisper`: speech content from the Whisper encoder (transformers' WhisperModel), 16 kHz → 50 Hz.

The encoder only takes 30 s windows: each clip is cut into 30 s windows, each window padded to 30 s
as Whisper's feature extractor does, and only the frames that cover real audio are kept (one per
320 samples). Windows are independent, so batching changes nothing and long clips continue
frame by frame. The default layer is the encoder's last (its final layer norm applied).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import WhisperFeatureExtractor, WhisperModel

from stages.extract.experts.hf_loading import HubExpert

WINDOW_SECONDS = 30
HOP = 320  # samples per encoder frame: mel hop 160 × conv stride 2


class WhisperExpert(HubExpert):
    name = "whisper"
    kind = "embedding"
    hears, model_name, rates = "speech content", "WhisperModel encoder", "16 kHz -> 50 Hz"
    weights = "hub openai/whisper-large-v3"
    sample_rate = 16000
    frame_rate = 16000 / HOP
    hub_id = "openai/whisper-large-v3"
    model_types = ("whisper",)

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        layer: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        model = self.load_model(WhisperModel, checkpoint, device, dtype, trust_remote_code)
        self.encoder = model.get_encoder()
        self.layers = int(model.config.encoder_layers)
        self.layer = self.choose_layer(layer, self.layers)
        self.dim = int(model.config.d_model)
        try:
            self.features = WhisperFeatureExtractor.from_pretrained(self.source)
        except OSError:  # a directory with the model only: Whisper's standard front end for its mel size
            self.features = WhisperFeatureExtractor(feature_size=int(model.config.num_mel_bins))

    @classmethod
    def build_tiny(cls, folder: Path) -> Path:
        from transformers import WhisperConfig

        config = WhisperConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            vocab_size=100,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            max_source_positions=1500,
            max_target_positions=32,
        )
        WhisperModel(config).save_pretrained(folder)
        WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
        return folder

    def frame_times(self, num_frames: int) -> np.ndarray:
        return np.arange(num_frames) / self.frame_rate  # encoder frame i centres on mel frame 2i

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        span = WINDOW_SECONDS * self.sample_rate
        pieces = [[w[s : s + span] for s in range(0, max(1, len(w)), span)] for w in waves]
        flat = [p for clip in pieces for p in clip]
        mel = self.features(flat, sampling_rate=self.sample_rate, return_tensors="pt").input_features
        out = self.encoder(mel.to(self.device, self.dtype), output_hidden_states=True)
        states = (out.last_hidden_state if self.layer == self.layers else out.hidden_states[self.layer]).float().cpu()
        keep = [math.ceil(len(p) / HOP) for p in flat]
        result, at = [], 0
        for clip in pieces:
            frames = [states[at + j, : keep[at + j]] for j in range(len(clip))]
            at += len(clip)
            result.append(torch.cat(frames).numpy())
        return result

    def describe(self) -> dict[str, Any]:
        return {"model": self.source, "revision": self._revision, "layer": str(self.layer)}
