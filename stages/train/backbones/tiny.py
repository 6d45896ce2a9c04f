"""Offline pieces for the `tiny-` twins: a byte-level BPE tokenizer trained here on a little text.

The real checkpoints' tokenizers are byte-level BPE too (Qwen2's), so the twin exercises the same
tokenizer class and the same chat-template and special-token machinery, only with a small vocabulary.
"""

from __future__ import annotations

from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen2TokenizerFast

from stages.train.tiny_text import tokenizer_text

# The size of every twin: 4 text layers of width 64, a 2-layer audio encoder on the real 128-bin front end.
TINY_TEXT: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "tie_word_embeddings": False,
    # A wider init than 0.02: with a frozen random lm_head, tiny logits would cap how far the LM loss
    # can fall, and the twin is there to show learning, not to mimic a 7B init.
    "initializer_range": 0.2,
}
TINY_AUDIO: dict[str, Any] = {
    "num_mel_bins": 128,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
    "d_model": 64,
}

# Qwen2's pre-tokenisation pattern, so that words, numbers and newlines split as in the real tokenizer.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_tiny_tokenizer(special_tokens: list[str], vocab_size: int = 600) -> Tokenizer:
    """A byte-level BPE over Qwen2's split pattern; every byte is in the alphabet, so any text encodes."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(pattern=Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=special_tokens,
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_text() * 4, trainer)
    return tokenizer


def tiny_qwen2_tokenizer(special_tokens: list[str], **kwargs: Any) -> Qwen2TokenizerFast:
    """The twins' tokenizer: the real class (Qwen2's) over the small BPE, ChatML end and pad tokens."""
    return Qwen2TokenizerFast(
        tokenizer_object=train_tiny_tokenizer(special_tokens),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        **kwargs,
    )
