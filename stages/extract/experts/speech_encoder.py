"""The wav2vec 2.0 family of encoders (WavLM, HuBERT, MERT): hidden states of one layer per conv frame.

Frames come from the convolutional front end: the hop is the product of its strides, 320 samples or
20 ms at 16 kHz. A frame's centre is half its receptive field after the frame's start.

Padding must not change a clip's numbers. Models whose front end normalises per frame
(`feat_extract_norm="layer"`) run batched with an attention mask. Models with group normalisation
over time (`"group"`, e.g. the base checkpoints) would let padding leak through those statistics,
so they run one clip per forward, as their model cards advise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from stages.extract.experts.hf_loading import HubExpert, feature_extractor_normalises

# The tiny encoders' shape (`build_tiny`): 2 layers, 32 wide, the real 7-layer convolutional front end.
TINY_SPEECH = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16, 16, 16, 16, 16, 16, 16),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


class SpeechEncoderExpert(HubExpert):
    """Subclasses name the model class, hub id, accepted model types and sample rate."""

    kind = "embedding"
    hears = "speech content"
    model_class: ClassVar[Any]

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        layer: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.model = self.load_model(self.model_class, checkpoint, device, dtype, trust_remote_code)
        config = self.model.config
        self.layers = int(config.num_hidden_layers)
        self.layer = self.choose_layer(layer, self.layers)
        self.dim = int(config.hidden_size)
        self.hop = int(np.prod(config.conv_stride))
        field = 1
        for kernel, stride in zip(reversed(config.conv_kernel), reversed(config.conv_stride)):
            field = (field - 1) * stride + kernel
        self.receptive_field = field
        self.frame_rate = self.sample_rate / self.hop
        self.min_seconds = field / self.sample_rate
        self.batched = getattr(config, "feat_extract_norm", "group") == "layer"
        self.do_normalize = feature_extractor_normalises(self.source)

    @classmethod
    def tiny_model(cls) -> Any:
        """The class's model at TINY_SPEECH's size, randomly initialised."""
        raise NotImplementedError

    tiny_normalises: ClassVar[bool] = False  # the `do_normalize` its checkpoints' feature extractor ships

    @classmethod
    def build_tiny(cls, folder: Path) -> Path:
        from transformers import Wav2Vec2FeatureExtractor

        cls.tiny_model().save_pretrained(folder)
        Wav2Vec2FeatureExtractor(sampling_rate=cls.sample_rate, do_normalize=cls.tiny_normalises).save_pretrained(
            folder
        )
        return folder

    def frame_times(self, num_frames: int) -> np.ndarray:
        return (np.arange(num_frames) * self.hop + self.receptive_field / 2) / self.sample_rate

    def _normalise(self, wave: np.ndarray) -> np.ndarray:
        """Zero mean, unit variance per clip where the checkpoint's feature extractor asks for it."""
        if not self.do_normalize:
            return wave
        return ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32)

    @torch.inference_mode()
    def _forward(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        lengths = [len(w) for w in waves]
        batch = torch.zeros(len(waves), max(lengths), dtype=torch.float32)
        mask = torch.zeros(len(waves), max(lengths), dtype=torch.long)
        for i, wave in enumerate(waves):
            batch[i, : len(wave)] = torch.from_numpy(self._normalise(wave))
            mask[i, : len(wave)] = 1
        out = self.model(
            batch.to(self.device, self.dtype),
            attention_mask=mask.to(self.device) if len(waves) > 1 else None,
            output_hidden_states=True,
        )
        states = out.hidden_states[self.layer].float().cpu()
        frames = self.model._get_feat_extract_output_lengths(torch.tensor(lengths))
        return [states[i, : int(n)].numpy() for i, n in enumerate(frames)]

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        if self.batched:
            return self._forward(waves)
        return [self._forward([w])[0] for w in waves]

    def describe(self) -> dict[str, Any]:
        return {"model": self.source, "revision": self._revision, "layer": str(self.layer)}
