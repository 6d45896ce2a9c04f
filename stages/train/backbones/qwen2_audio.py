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

    def _tiny(self, seed: int, window_s: int = 30) -> tuple[Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor]:
        """128 mel bins and 30 s windows by default, as the real Whisper-large-v3 front end. A shorter
        `window_s` shrinks the encoder's fixed input (it always reads a whole window) for short clips."""
        tokenizer = tiny_qwen2_tokenizer(SPECIAL)
        processor = Qwen2AudioProcessor(
            feature_extractor=WhisperFeatureExtractor(feature_size=128, chunk_length=window_s), tokenizer=tokenizer
        )
        config = Qwen2AudioConfig(
            # 100 mel frames per second, halved by the encoder's strided convolution
            audio_config=Qwen2AudioEncoderConfig(**TINY_AUDIO, max_source_positions=50 * window_s),
            text_config=Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=4096, **TINY_TEXT),
            audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
        )
        return Qwen2AudioForConditionalGeneration(config), processor
