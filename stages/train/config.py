"""The typed settings of the CoAT model: backbone, thinking block, LoRA, heads and loss weights."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class ModelConfig(BaseModel):
    """Written into every run directory and bundle (`config.yaml`)."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = "tiny-qwen2-audio"  # qwen2-audio | qwen2.5-omni | af3, or their tiny- twins
    model_path: str | None = None  # local dir or hub id instead of the backbone's default
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    think_tokens: int = Field(default=32, ge=1)  # K, the thinking positions
    no_think: bool = False  # the baseline: no block, no heads, same LoRA
    # Hidden-state layer the heads read (0 = embeddings, N = last). Default: 2/3 of the depth, so the block
    # has attended to the audio through most of the stack while the last third stays free to turn what it
    # holds into the answer, rather than the distillation pulling on the very states that predict tokens.
    think_layer: int | None = None
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = Field(default_factory=lambda: list(LORA_TARGETS))  # linear layers of the LM only
    distill_weight: float = 1.0  # λ in L = L_lm + λ Σ_e w_e L_e
    expert_weights: dict[str, float] = {}  # w_e; default 1 for every expert
    head_width: int = 256
    head_layers: int = 2
    head_heads: int = 4

    def resolved_think_layer(self, num_layers: int) -> int:
        layer = self.think_layer if self.think_layer is not None else round(2 * num_layers / 3)
        if not 0 <= layer <= num_layers:
            raise ValueError(f"think_layer must lie in [0, {num_layers}], got {layer}")
        return layer
