"""The one prompt: chat template, thinking block opening the assistant turn, audio cut to the backbone's
window. Training appends the response to it; inference generates after it. Both call `encode_conversations`,
so what a trained model is asked at evaluation is what it was trained on."""

from __future__ import annotations

import warnings

import numpy as np
from transformers import BatchFeature, ProcessorMixin

from stages.train.backbones.base import SAMPLE_RATE, Backbone
from stages.train.think import thinking_block


def prompt_text(
    backbone: Backbone, processor: ProcessorMixin, question: str, think_tokens: int, system: str | None = None
) -> str:
    """The chat-template prompt up to the assistant turn, which the block of `think_tokens` positions opens
    (none for a --no-think model); `system` replaces the template's default system turn (evaluation)."""
    return backbone.prompt(processor, question, system) + (thinking_block(think_tokens) if think_tokens else "")


def audio_in_window(wave: np.ndarray, key: str, backbone: Backbone, processor: ProcessorMixin) -> np.ndarray:
    """The first `max_audio_seconds` of a 16 kHz clip, with a warning naming the clip when it is cut."""
    seconds = backbone.max_audio_seconds(processor)
    limit = int(seconds * SAMPLE_RATE)
    if len(wave) > limit:
        warnings.warn(
            f"{key}: {len(wave) / SAMPLE_RATE:.1f} s is longer than {backbone.name}'s "
            f"{seconds:.0f} s; the model hears the first {seconds:.0f} s",
            stacklevel=3,
        )
        return wave[:limit]
    return wave


def encode_conversations(
    backbone: Backbone,
    processor: ProcessorMixin,
    think_tokens: int,
    keys: list[str],
    waves: list[np.ndarray],
    questions: list[str],
    responses: list[str] | None = None,
    padding_side: str = "right",
    system: str | None = None,
) -> BatchFeature:
    """Tokens and audio features of each clip's prompt, followed by its response when given (training).

    Inference leaves `responses` out and pads on the left, so that generation appends on the right."""
    texts = [prompt_text(backbone, processor, q, think_tokens, system) for q in questions]
    if responses is not None:
        texts = [t + r for t, r in zip(texts, responses, strict=True)]
    audio = [audio_in_window(w, k, backbone, processor) for k, w in zip(keys, waves, strict=True)]
    return backbone.encode(processor, texts, audio, padding_side=padding_side)
