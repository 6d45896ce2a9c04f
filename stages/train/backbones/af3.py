"""`af3`: Audio Flamingo 3 (AF-Whisper encoder + Qwen2.5-7B), 30 s windows up to 10 min per clip."""

from __future__ import annotations

from transformers import (
    AudioFlamingo3Config,
    AudioFlamingo3EncoderConfig,
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    Qwen2Config,
    Qwen2TokenizerFast,
    WhisperFeatureExtractor,
)

from stages.train.backbones.base import Backbone, qwen_chat_template
from stages.train.backbones.tiny import train_tiny_tokenizer

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"]


class AudioFlamingo3Backbone(Backbone):
    name = "af3"
    hub_id = "nvidia/audio-flamingo-3-hf"
    model_class = AudioFlamingo3ForConditionalGeneration

    def max_audio_seconds(self, processor: AudioFlamingo3Processor) -> float:
        return float(processor.max_audio_len)  # 30 s windows, up to 600 s by default

    def _tiny(self, seed: int) -> tuple[AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor]:
        tokenizer = Qwen2TokenizerFast(
            tokenizer_object=train_tiny_tokenizer(SPECIAL), eos_token="<|im_end|>", pad_token="<|endoftext|>"
        )
        processor = AudioFlamingo3Processor(
            feature_extractor=WhisperFeatureExtractor(feature_size=128),
            tokenizer=tokenizer,
            chat_template=qwen_chat_template("You are a helpful assistant.", "<sound>"),
        )
        config = AudioFlamingo3Config(
            audio_config=AudioFlamingo3EncoderConfig(
                num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, d_model=64
            ),
            text_config=Qwen2Config(
                vocab_size=len(tokenizer),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=8192,
                tie_word_embeddings=False,
                # A wider init than 0.02: with a frozen random lm_head, tiny logits would cap how far the
                # LM loss can fall, and the twin is there to show learning, not to mimic a 7B init.
                initializer_range=0.2,
            ),
            audio_token_id=tokenizer.convert_tokens_to_ids("<sound>"),
        )
        return AudioFlamingo3ForConditionalGeneration(config), processor
