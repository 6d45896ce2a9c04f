"""`wavlm`: speech content from WavLM (transformers' WavLMModel), 16 kHz → 50 Hz, last layer by default."""

from __future__ import annotations

from transformers import WavLMModel

from stages.extract.experts.speech_encoder import SpeechEncoderExpert


class WavLMExpert(SpeechEncoderExpert):
    name = "wavlm"
    sample_rate = 16000
    model_class = WavLMModel
    hub_id = "microsoft/wavlm-large"
    model_types = ("wavlm",)
