"""`hubert`: speech content from HuBERT (transformers' HubertModel), 16 kHz → 50 Hz, last layer by default."""

from __future__ import annotations

from transformers import HubertModel

from stages.extract.experts.speech_encoder import SpeechEncoderExpert


class HubertExpert(SpeechEncoderExpert):
    name = "hubert"
    sample_rate = 16000
    model_class = HubertModel
    hub_id = "facebook/hubert-large-ll60k"
    model_types = ("hubert",)
