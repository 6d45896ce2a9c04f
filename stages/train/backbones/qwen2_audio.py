"""`qwen2-audio`: Qwen2-Audio-7B-Instruct (Whisper-large-v3 encoder + Qwen-7B), 30 s per clip."""

from __future__ import annotations

from transformers import (
    Qwen2AudioConfig,
    Qwen2AudioEncoderConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    WhisperFeatureExtractor,
)

from stages.train.backbones.base import Backbone
from stages.train.backbones.tiny import TINY_AUDIO, TINY_TEXT, tiny_qwen2_tokenizer

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]


class Qwen2AudioBackbone(Backbone):
    name = "qwen2-audio"
    hub_id = "Qwen/Qwen2-Audio-7B-Instruct"
    model_class = Qwen2AudioForConditionalGeneration

    def _tiny(self, seed: int) -> tuple[Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor]:
        tokenizer = tiny_qwen2_tokenizer(SPECIAL)
        # 128 mel bins and 30 s windows, as the real Whisper-large-v3 front end.
        processor = Qwen2AudioProcessor(
            feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer
        )
        config = Qwen2AudioConfig(
            audio_config=Qwen2AudioEncoderConfig(**TINY_AUDIO),
            text_config=Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=4096, **TINY_TEXT),
            audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
        )
        return Qwen2AudioForConditionalGeneration(config), processor
