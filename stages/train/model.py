"""The CoAT model: a backbone with LoRA, a thinking block whose token rows train, and per-expert heads.

model = CoatModel.build(ModelConfig(backbone="tiny-qwen2-audio"), specs)   # specs from the store's stats
out = model(model.batch(samples))     # out.loss = L_lm + λ Σ_e w_e L_e; out.lm_loss; out.expert_losses
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel, ProcessorMixin

from stages.train.backbones import Backbone, backbone_config, resolve_backbone
from stages.train.batch import CoatBatch, CoatSample, make_batch
from stages.train.config import ModelConfig, resolved_dtype
from stages.train.heads import ExpertHead, expert_loss
from stages.train.oracle import OracleInput
from stages.train.targets import SlotTargets, TargetSpec
from stages.train.think import ThinkIds, add_thinking_tokens
from store_schema.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class CoatOutput:
    loss: torch.Tensor  # what backward() takes
    lm_loss: torch.Tensor
    expert_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    slots: dict[str, torch.Tensor] = field(default_factory=dict)  # expert -> (B, K, D) predictions
    clips: dict[str, torch.Tensor] = field(default_factory=dict)  # expert -> (B, D) predictions
    logits: torch.Tensor | None = None


AUDIO_LINEAR = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")  # the Whisper-style encoders' layers


def lora_config(config: ModelConfig, model: PreTrainedModel, backbone: Backbone, think: ThinkIds | None) -> LoraConfig:
    """LoRA on the language model's linear layers (and on the audio encoder's with `train_audio_encoder:
    lora`); the block's token rows train through PEFT's trainable tokens, every other embedding row stays
    frozen; the projector (`train_projector`) and a fully trained audio encoder are PEFT's modules_to_save."""
    language_model = backbone.language_model(model)
    prefix = next(name for name, module in model.named_modules() if module is language_model)
    patterns = [rf"{re.escape(prefix)}\..*\.({'|'.join(map(re.escape, config.lora_targets))})"]
    if config.train_audio_encoder == "lora":
        patterns.append(rf"{re.escape(backbone.audio_encoder_name)}\..*\.({'|'.join(AUDIO_LINEAR)})")
    saved = [backbone.audio_encoder_name] if config.train_audio_encoder == "full" else []
    if config.train_projector and not (saved and backbone.projector_name.startswith(backbone.audio_encoder_name)):
        saved.append(backbone.projector_name)
    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="^(" + "|".join(patterns) + ")$",
        trainable_token_indices={"embed_tokens": think.all} if think else None,
        modules_to_save=saved or None,
    )


def full_fine_tuning(config: ModelConfig, model: PreTrainedModel, backbone: Backbone) -> PreTrainedModel:
    """`lora_rank: 0`: every weight of the language model (its embeddings, so the block's rows, and its output
    layer included) trains; the audio encoder and projector as configured, frozen by default."""
    model.requires_grad_(False)
    backbone.language_model(model).requires_grad_(True)
    model.get_output_embeddings().requires_grad_(True)
    if config.train_audio_encoder == "full":
        model.get_submodule(backbone.audio_encoder_name).requires_grad_(True)
    if config.train_projector:
        model.get_submodule(backbone.projector_name).requires_grad_(True)
    return model


class CoatModel(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        backbone: Backbone,
        source: str,
        model: PeftModel | PreTrainedModel,  # a plain model: an export with the adapters merged in
        processor: ProcessorMixin,
        think: ThinkIds | None,
        specs: dict[str, TargetSpec],
    ) -> None:
        super().__init__()
        self.config, self.backbone, self.source = config, backbone, source
        self.model, self.processor, self.think, self.specs = model, processor, think, specs
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        self.think_layer = config.resolved_think_layer(backbone.num_layers(base))
        hidden, k = backbone.hidden_size(base), config.think_tokens
        self.heads = nn.ModuleDict()
        width = config.head_width or min(256, hidden)
        if think is not None:
            for name, spec in specs.items():
                self.heads[name] = ExpertHead(hidden, spec.dim, k, width, config.head_layers, config.head_heads)
        self.oracle: OracleInput | None = None
        if config.oracle and think is not None:
            self.oracle = OracleInput(specs, hidden, think.slots)
            model.get_input_embeddings().register_forward_hook(self.oracle.add_to_embeddings)

    @staticmethod
    def check_against_backbone(config: ModelConfig) -> None:
        """The settings that need the backbone's shape (the layer the heads read, the heads' width), checked
        from its config alone, before a run writes anything; UserError names the setting and the bound."""
        text = backbone_config(config)[0].get_text_config()
        layers, hidden = int(text.num_hidden_layers), int(text.hidden_size)
        try:
            config.resolved_think_layer(layers)
        except ValueError as e:
            raise UserError(f"model.think_layer: {e} ({config.backbone} has {layers} layers)") from None
        width = config.head_width or min(256, hidden)
        if width % config.head_heads:
            raise UserError(f"model.head_heads {config.head_heads} does not divide the heads' width {width}")

    @classmethod
    def load_base(cls, config: ModelConfig) -> tuple[Backbone, str, PreTrainedModel, ProcessorMixin, ThinkIds | None]:
        """The backbone with the block's tokens added (and embeddings grown if the vocabulary has no room)."""
        backbone, source = resolve_backbone(config.backbone, config.model_path)
        model, processor = backbone.load(source, DTYPES[resolved_dtype(config.dtype)], config.attn_implementation)
        think = None if config.no_think else add_thinking_tokens(processor.tokenizer, config.think_tokens)
        old = model.get_input_embeddings().num_embeddings
        if len(processor.tokenizer) > old:  # the real checkpoints have spare rows; the tiny twins do not
            # The resize draws the new rows at random (overwritten just below): kept off the global RNG so
            # that the LoRA drawn next is the same with and without a block, and arms of a seed pair exactly.
            with torch.random.fork_rng(devices=[]):
                model.resize_token_embeddings(len(processor.tokenizer), mean_resizing=False)
            with torch.no_grad():  # deterministic new rows, so a bundle reloads to the same numbers
                for matrix in (model.get_input_embeddings(), model.get_output_embeddings()):
                    matrix.weight[old:] = matrix.weight[:old].mean(dim=0)
        return backbone, source, model, processor, think

    @classmethod
    def build(cls, config: ModelConfig, specs: dict[str, TargetSpec]) -> CoatModel:
        """A fresh CoAT model (LoRA initialised, heads random) for `specs`, one per store expert."""
        return cls.from_base(config, specs, *cls.load_base(config))

    @classmethod
    def from_base(
        cls,
        config: ModelConfig,
        specs: dict[str, TargetSpec],
        backbone: Backbone,
        source: str,
        model: PreTrainedModel,
        processor: ProcessorMixin | None,
        think: ThinkIds | None,
    ) -> CoatModel:
        """The CoAT model around a loaded base (`train --plan` passes one built on the meta device)."""
        if config.checkpointing:  # non-reentrant: works with LoRA and frozen inputs, keeps the RNG for dropout
            if hasattr(model, "activation_checkpointing_enable"):  # transformers' name from 5.x on
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.lora_rank == 0:
            return cls(config, backbone, source, full_fine_tuning(config, model, backbone), processor, think, specs)
        peft_model = get_peft_model(model, lora_config(config, model, backbone, think))
        return cls(config, backbone, source, peft_model, processor, think, specs)

    def train(self, mode: bool = True) -> CoatModel:
        """Training mode for what trains; a frozen audio encoder (and Qwen2.5-Omni's vision encoder) stays in
        eval mode, a fixed feature extractor (no dropout, no layer drop). transformers returns models in eval
        mode, so without this the decoder would never run as in training (gradient checkpointing is skipped
        in eval mode)."""
        super().train(mode)
        if mode:
            base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
            frozen = [] if self.config.train_audio_encoder != "frozen" else [self.backbone.audio_encoder(base)]
            frozen += [getattr(getattr(base, "model", base), "visual", None)]
            for module in frozen:
                if module is not None:
                    module.eval()
        return self

    def batch(self, samples: list[CoatSample]) -> CoatBatch:
        return make_batch(samples, self.backbone, self.processor, self.think, self.specs if self.think else {})

    @contextmanager
    def targets_given(self, targets: dict[str, SlotTargets]) -> Iterator[None]:
        """Every forward of the backbone inside sees the clips' targets at the block: the oracle arm only;
        for any other model nothing changes (its targets feed its loss, never its input)."""
        with self.oracle.given(targets) if self.oracle is not None else nullcontext():
            yield

    def thinking_states(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L, H) hidden states -> (B, K, H) at the thinking positions."""
        assert self.think is not None
        positions = self.think.slot_positions(input_ids)  # (B, K)
        return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))

    def forward(self, batch: CoatBatch, lm_weight: float = 1.0) -> CoatOutput:
        """L = lm_weight · L_lm + λ Σ_e w_e L_e (lm_weight 0 is the `align` stage of two-stage training)."""
        device = next(self.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.inputs.items()}
        with self.targets_given(batch.targets):
            out = self.model(**inputs, labels=batch.labels.to(device), output_hidden_states=self.think is not None)
        result = CoatOutput(loss=lm_weight * out.loss, lm_loss=out.loss, logits=out.logits)
        if self.think is None or not self.heads:
            return result
        states = self.thinking_states(out.hidden_states[self.think_layer], inputs["input_ids"])
        # With λ = 0 (the block control) no weight learns from the heads: 0 · loss adds exact zeros to every
        # gradient. Their losses are still computed for the log, without a graph, so the control does not
        # pay a backward pass through them.
        supervised = torch.is_grad_enabled() and self.config.distill_weight != 0
        for name, head in self.heads.items():
            with torch.set_grad_enabled(supervised):
                slots, clip = head(states.to(head.proj_in.weight.dtype))
            slots, clip = slots.float(), clip.float()  # losses in float32 whatever the training precision
            loss = expert_loss(self.specs[name].kind, slots, clip, batch.targets[name].to(device))
            result.slots[name], result.clips[name], result.expert_losses[name] = slots, clip, loss
            weight = self.config.expert_weights.get(name, 1.0)
            result.loss = result.loss + self.config.distill_weight * weight * loss
        return result
