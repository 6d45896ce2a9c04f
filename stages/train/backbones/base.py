"""What every backbone provides: loading through transformers' own classes, prompting, and a tiny twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from transformers import AutoProcessor, BatchFeature, PreTrainedModel, ProcessorMixin

from store_schema.errors import UserError

SAMPLE_RATE = 16000  # every supported backbone's audio encoder reads 16 kHz


def check_flash_attention() -> None:
    """flash_attention_2 needs the flash-attn package and a CUDA device: say so before loading 7B weights."""
    import importlib.util

    if importlib.util.find_spec("flash_attn") is None:
        raise UserError(
            "--attn-implementation flash_attention_2 needs the flash-attn package (pip install flash-attn, on a "
            "CUDA machine); use sdpa (the default), which needs nothing more"
        )
    if not torch.cuda.is_available():
        raise UserError("--attn-implementation flash_attention_2 runs on CUDA GPUs only; use sdpa on this machine")


def qwen_chat_template(system: str, audio_markup: str) -> str:
    """A Qwen-style ChatML template that puts `audio_markup` where an audio item sits in a user turn."""
    return (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        f"<|im_start|>system\n{system}<|im_end|>\n"
        "{% endif %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for item in message['content'] %}"
        f"{{% if item['type'] == 'audio' %}}{audio_markup}"
        "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


class Backbone:
    """One LALM family. Subclasses set the class attributes and build their tiny twin."""

    name: ClassVar[str]
    hub_id: ClassVar[str]
    model_class: ClassVar[type[PreTrainedModel]]
    end_of_turn: ClassVar[str] = "<|im_end|>"  # closes the assistant turn; trained as the response's last token
    audio_encoder_name: ClassVar[str] = "model.audio_tower"  # module names inside the model class
    projector_name: ClassVar[str] = "model.multi_modal_projector"  # audio features -> the LM's width

    # --- loading -----------------------------------------------------------------------------------
    def load(
        self, source: str | Path, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"
    ) -> tuple[PreTrainedModel, ProcessorMixin]:
        """Model and processor from a hub id (or the HF cache) or a local directory."""
        if attn_implementation == "flash_attention_2":
            check_flash_attention()
        try:
            processor = self.load_processor(source)
            model = self.model_class.from_pretrained(str(source), dtype=dtype, attn_implementation=attn_implementation)
        except OSError as e:
            raise UserError(
                f"no {self.name} checkpoint at {source} ({str(e).splitlines()[0]}). Download it with "
                f"`hf download {self.hub_id}` on a machine with network access, or pass a local directory."
            ) from None
        config_type = type(model.config).__name__
        if not isinstance(model, self.model_class):
            raise UserError(f"{source} holds a {config_type}, not a {self.name} checkpoint")
        return model, processor

    def load_processor(self, source: str | Path) -> ProcessorMixin:
        return AutoProcessor.from_pretrained(str(source))

    def build_tiny(self, out_dir: Path, seed: int = 0, **options: Any) -> Path:
        """Write a randomly initialised twin (same classes, small config) and its processor to `out_dir`;
        `options` are the family's own twin settings (e.g. qwen2-audio's `window_s`)."""
        torch.manual_seed(seed)
        model, processor = self._tiny(seed, **options)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        return out_dir

    def _tiny(self, seed: int, **options: Any) -> tuple[PreTrainedModel, ProcessorMixin]:
        raise NotImplementedError

    # --- prompting ---------------------------------------------------------------------------------
    def max_audio_seconds(self, processor: ProcessorMixin) -> float:
        """The longest clip the processor keeps; longer clips are cut (with a warning naming them)."""
        return float(processor.feature_extractor.chunk_length)

    def prompt(self, processor: ProcessorMixin, question: str, system: str | None = None) -> str:
        """The conversation up to the assistant turn's start, in the backbone's own chat template (with
        `system` as its system turn when given, else the template's own default)."""
        content = [{"type": "audio", "audio": "<clip>"}, {"type": "text", "text": question}]
        messages = [{"role": "user", "content": content}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(
        self, processor: ProcessorMixin, texts: list[str], waves: list[np.ndarray], padding_side: str = "right"
    ) -> BatchFeature:
        """Tokens with the audio placeholders expanded by the processor itself, and the audio features."""
        # Padding is for the text only: each processor pads audio features its own way (30 s windows).
        batch = processor(
            text=texts,
            audio=waves,
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            text_kwargs={"padding": True, "padding_side": padding_side},
        )
        batch.pop("num_audio_tokens", None)
        return batch

    # --- structure ---------------------------------------------------------------------------------
    def audio_encoder(self, model: PreTrainedModel) -> nn.Module:
        inner = getattr(model, "model", model)  # transformers 5 nests the towers under `.model`
        return inner.audio_tower

    def language_model(self, model: PreTrainedModel) -> nn.Module:
        return model.get_decoder()

    def num_layers(self, model: PreTrainedModel) -> int:
        return int(model.config.get_text_config().num_hidden_layers)

    def hidden_size(self, model: PreTrainedModel) -> int:
        return int(model.config.get_text_config().hidden_size)

    def describe(self) -> dict[str, Any]:
        return {"backbone": self.name, "hub_id": self.hub_id, "class": self.model_class.__name__}
