"""`qwen2-audio`: Qwen2-Audio-7B-Instruct (Whisper-large-v3 encoder + Qwen-7B), 30 s per clip."""

from __future__ import annotations

from transformers import (
    Qwen2AudioConfig,
    Qwen2AudioEncoderConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    Qwen2TokenizerFast,
    WhisperFeatureExtractor,
)

from stages.train.backbones.base import Backbone
from stages.train.backbones.tiny import train_tiny_tokenizer

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]


class Qwen2AudioBackbone(Backbone):
    name = "qwen2-audio"
    hub_id = "Qwen/Qwen2-Audio-7B-Instruct"
    model_class = Qwen2AudioForConditionalGeneration

    def _tiny(self, seed: int) -> tuple[Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor]:
        tokenizer = Qwen2TokenizerFast(
            tokenizer_object=train_tiny_tokenizer(SPECIAL), eos_token="<|im_end|>", pad_token="<|endoftext|>"
        )
        # 128 mel bins and 30 s windows, as the real Whisper-large-v3 front end.
        processor = Qwen2AudioProcessor(
            feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer
        )
        config = Qwen2AudioConfig(
            audio_config=Qwen2AudioEncoderConfig(
                num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, d_model=64
            ),
            text_config=Qwen2Config(
                vocab_size=len(tokenizer),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=4096,
                tie_word_embeddings=False,
                # A wider init than 0.02: with a frozen random lm_head, tiny logits would cap how far the
                # LM loss can fall, and the twin is there to show learning, not to mimic a 7B init.
                initializer_range=0.2,
            ),
            audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
        )
        return Qwen2AudioForConditionalGeneration(config), processor
