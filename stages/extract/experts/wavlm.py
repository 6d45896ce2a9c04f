"""`wavlm`: speech content from WavLM (transformers' WavLMModel), 16 kHz → 50 Hz, last layer by default."""

from __future__ import annotations

from typing import Any

from transformers import WavLMConfig, WavLMModel

from stages.extract.experts.speech_encoder import TINY_SPEECH, SpeechEncoderExpert


class WavLMExpert(SpeechEncoderExpert):
    name = "wavlm"
    sample_rate = 16000
    model_class = WavLMModel
    hub_id = "microsoft/wavlm-large"
    model_types = ("wavlm",)
    model_name, rates, weights = "WavLMModel", "16 kHz -> 50 Hz", "hub microsoft/wavlm-large"
    tiny_normalises = True

    @classmethod
    def tiny_model(cls) -> Any:  # a layer-norm front end, as wavlm-large's: runs batched with a mask
        config = WavLMConfig(
            **TINY_SPEECH, feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=16, max_bucket_distance=64
        )
        return WavLMModel(config)
