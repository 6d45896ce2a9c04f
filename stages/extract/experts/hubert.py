"""`hubert`: speech content from HuBERT (transformers' HubertModel), 16 kHz → 50 Hz, last layer by default."""

from __future__ import annotations

from typing import Any

from transformers import HubertConfig, HubertModel

from stages.extract.experts.speech_encoder import TINY_SPEECH, SpeechEncoderExpert


class HubertExpert(SpeechEncoderExpert):
    name = "hubert"
    sample_rate = 16000
    model_class = HubertModel
    hub_id = "facebook/hubert-large-ll60k"
    model_types = ("hubert",)
    model_name, rates, weights = "HubertModel", "16 kHz -> 50 Hz", "hub facebook/hubert-large-ll60k"

    @classmethod
    def tiny_model(cls) -> Any:  # group normalisation over time, as the base checkpoints: one clip per forward
        return HubertModel(HubertConfig(**TINY_SPEECH, feat_extract_norm="group"))
