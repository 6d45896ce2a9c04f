"""`af3`: Audio Flamingo 3 (AF-Whisper encoder + Qwen2.5-7B), 30 s windows up to 10 min per clip."""

from __future__ import annotations

from transformers import (
    AudioFlamingo3Config,
    AudioFlamingo3EncoderConfig,
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    Qwen2Config,
    WhisperFeatureExtractor,
)

from stages.train.backbones.base import Backbone, qwen_chat_template
from stages.train.backbones.tiny import TINY_AUDIO, TINY_TEXT, tiny_qwen2_tokenizer

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"]


class AudioFlamingo3Backbone(Backbone):
    name = "af3"
    hub_id = "nvidia/audio-flamingo-3-hf"
    model_class = AudioFlamingo3ForConditionalGeneration

    def max_audio_seconds(self, processor: AudioFlamingo3Processor) -> float:
        return float(processor.max_audio_len)  # 30 s windows, up to 600 s by default

    def _tiny(self, seed: int) -> tuple[AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor]:
        tokenizer = tiny_qwen2_tokenizer(SPECIAL)
        processor = AudioFlamingo3Processor(
            feature_extractor=WhisperFeatureExtractor(feature_size=128),
            tokenizer=tokenizer,
            chat_template=qwen_chat_template("You are a helpful assistant.", "<sound>"),
        )
        config = AudioFlamingo3Config(
            audio_config=AudioFlamingo3EncoderConfig(**TINY_AUDIO),
            text_config=Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=8192, **TINY_TEXT),
            audio_token_id=tokenizer.convert_tokens_to_ids("<sound>"),
        )
        return AudioFlamingo3ForConditionalGeneration(config), processor
