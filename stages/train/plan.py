"""`coat-pipe train --plan`: what a configuration needs before it is submitted, with nothing trained or downloaded.

The configured backbone is built at its real size on PyTorch's `meta` device (shapes, no storage) from its
published config (`backbones/published/*.json`, or `--model-path`'s config.json, or the tiny twin's), and
LoRA, the block and the heads are applied by the same code as training (`CoatModel.from_base`). From that
model the plan counts parameters per part and estimates per-GPU memory under DeepSpeed ZeRO-2:

  weights       every parameter in the compute precision (the frozen base is replicated on each GPU)
  gradients     the trainable parameters' fp32 gradient partition (1/world of them) and ZeRO-2's two
                reduce buckets (`reduce_bucket_size` elements each, in the compute precision)
  optimizer     AdamW's fp32 master weights, first and second moments: 12 bytes per trainable
                parameter, partitioned over the world
  activations   what autograd keeps per token for the backward pass: per decoder layer the tensors
                counted in `_layer_activation_elements` (or, with gradient checkpointing, each layer's
                input plus one layer's worth during its recompute), one layer's worth more for the
                gradients in flight, and the logits of the loss
  overhead      the CUDA context and the allocator's slack (a fixed 1.5 GiB)

It is an estimate: docs/PERFORMANCE.md compares it with measured peaks.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stages.train.backbones import backbone_config
from stages.train.config import ModelConfig, TrainConfig, resolved_dtype
from stages.train.targets import TargetSpec
from stages.train.think import ThinkIds
from store_schema.errors import UserError

GIB = 2**30
OVERHEAD_BYTES = int(1.5 * GIB)  # CUDA context, NCCL buffers, allocator slack
ADAM_BYTES = 12  # fp32 master weights + two fp32 moments, per trainable parameter
AUDIO_TOKENS_PER_SECOND = 25  # every supported backbone: Whisper's 100 Hz features, stride 2, then pooled 2
TEXT_TOKENS = 96  # chat template, question and answer of a typical clip
# Store dims of each expert with its default weights (a store's own stats win when the corpus is given).
EXPERT_DIMS = {
    "mel": 128, "pitch": 2, "pitch-class": 4, "beats": 768, "beats-tags": 527, "whisper": 1280, "wavlm": 1024,
    "hubert": 1024, "emotion2vec": 1024, "emotion2vec-probs": 9, "wav2vec2-emotion": 4, "clap": 512, "mert": 1024,
}  # fmt: skip


@dataclass(frozen=True)
class PartCount:
    part: str
    total: int
    trainable: int


@dataclass
class TrainingPlan:
    """What `--plan` prints; bytes are per GPU unless named otherwise."""

    backbone: str
    config_source: str
    parts: list[PartCount]
    world: int
    gpu_bytes: int
    dtype: str
    batch_size: int
    batch_seconds: float | None
    grad_accum: int
    clip_seconds: float
    tokens_per_clip: int
    memory: dict[str, int]  # weights, gradients, optimizer, activations, overhead
    activations_other: int  # the activations with gradient checkpointing switched the other way
    checkpointing: bool
    checkpoint_bytes: int  # one checkpoint on disk: trainable weights and optimizer states, all ranks
    checkpoint_bytes_with_frozen: int  # what it was when the frozen base was saved too
    suggestions: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.memory.values())

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_bytes

    @property
    def tokens_per_step(self) -> int:
        return self.tokens_per_clip * self.batch_size * self.grad_accum * self.world

    @property
    def parameters(self) -> int:
        return sum(p.total for p in self.parts)

    @property
    def trainable(self) -> int:
        return sum(p.trainable for p in self.parts)


def parse_memory(text: str) -> int:
    """'80GiB', '80GB', '40 GiB', '81920MiB' -> bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]i?B?)\s*", text, flags=re.IGNORECASE)
    if not match:
        raise UserError(f"--plan-gpu-memory {text!r}: expected a size such as 80GiB or 40GB")
    unit = match[2].upper().removesuffix("B")
    base = 1024 if unit.endswith("I") else 1000
    return int(float(match[1]) * base ** "KMGT".index(unit[0]) * base)


def meta_model(cfg: TrainConfig, specs: dict[str, TargetSpec]) -> tuple[Any, str]:
    """The CoAT model of `cfg` on the meta device: (CoatModel, where the backbone's config came from)."""
    from stages.train.backbones import resolve_backbone
    from stages.train.model import DTYPES, CoatModel

    model_cfg = cfg.model
    backbone, source = resolve_backbone(str(model_cfg.backbone), model_cfg.model_path)
    config, where, tokenizer_size = backbone_config(model_cfg)
    dtype = DTYPES[resolved_dtype(model_cfg.dtype)]
    with torch.device("meta"):
        base = backbone.model_class._from_config(config, dtype=dtype, attn_implementation="sdpa")
        vocab = base.get_input_embeddings().num_embeddings
        think = None
        if not model_cfg.no_think:  # the block's K + 2 ids follow the tokenizer's, as add_special_tokens puts them
            first = tokenizer_size if tokenizer_size is not None else vocab - model_cfg.think_tokens - 2
            ids = list(range(first, first + model_cfg.think_tokens + 2))
            think = ThinkIds(ids[0], tuple(ids[1:-1]), ids[-1])
            if ids[-1] >= vocab:  # no spare rows: training grows the embeddings, so does the plan
                base.resize_token_embeddings(ids[-1] + 1, mean_resizing=False)
        coat = CoatModel.from_base(model_cfg, specs, backbone, source, base, None, think)
    return coat, where


def count_parts(coat: Any) -> list[PartCount]:
    """Parameters per part: audio encoder, projector, language model, vision encoder (Omni), LoRA, block rows,
    heads (a part's trainable count is what trains in it)."""
    backbone = coat.backbone
    names = {
        "audio encoder": backbone.audio_encoder_name,
        "projector": backbone.projector_name,
    }
    parts: dict[str, list[int]] = {}
    for name, param in coat.named_parameters():
        plain = name.replace("base_model.model.", "").replace("model.model.", "model.").removeprefix("model.")
        plain = "model." + plain if not plain.startswith(("model.", "lm_head", "heads.")) else plain
        if name.startswith("heads."):
            part = "heads"
        elif "lora_" in name:
            part = "LoRA"
        elif "trainable_tokens" in name:
            part = "block rows"
        elif plain.startswith(names["projector"] + ".") or (
            "modules_to_save" in name and names["projector"].split(".")[-1] in name
        ):
            part = "projector"
        elif plain.startswith(names["audio encoder"] + "."):
            part = "audio encoder"
        elif plain.startswith("model.visual."):
            part = "vision encoder"
        else:
            part = "language model"
        entry = parts.setdefault(part, [0, 0])
        entry[0] += param.numel()
        entry[1] += param.numel() if param.requires_grad else 0
    order = ["audio encoder", "projector", "vision encoder", "language model", "LoRA", "block rows", "heads"]
    return [PartCount(p, *parts[p]) for p in order if p in parts]


def _text_config(coat: Any) -> Any:
    return coat.model.config.get_text_config() if hasattr(coat.model, "config") else coat.model.get_base_model().config


def _layer_activation_elements(text: Any, model_cfg: ModelConfig) -> int:
    """Elements autograd keeps per token in one Qwen2 decoder layer (SDPA, which keeps no attention matrix):
    both RMSNorms' inputs and outputs (4h); q, k, v and their rotated copies (2h + 4h·kv/heads); the
    attention output (h); the gate, up, activation and product of the SwiGLU MLP (4·I); with LoRA dropout, a
    dropped-out copy of the input of each adapted projection (six of width h, one of width I)."""
    h, inter = text.hidden_size, text.intermediate_size
    kv = h * text.num_key_value_heads // text.num_attention_heads
    elements = 4 * h + 2 * h + 4 * kv + h + 4 * inter
    if model_cfg.lora_rank and model_cfg.lora_dropout > 0:
        elements += 6 * h + inter
    return elements


def plan_training(
    cfg: TrainConfig,
    world: int,
    gpu_bytes: int,
    seconds: float | None = None,
    specs: dict[str, TargetSpec] | None = None,
    text_tokens: int = TEXT_TOKENS,
) -> TrainingPlan:
    """The plan of `cfg` on `world` GPUs of `gpu_bytes` each, for clips of `seconds` (default: 30 s) with
    `text_tokens` of chat template, question and answer each."""
    experts = cfg.experts or ["mel", "pitch"]
    if specs is None:
        unknown = [e for e in experts if e not in EXPERT_DIMS]
        if unknown:
            raise UserError(f"--plan: unknown expert(s) {', '.join(unknown)}; known: {', '.join(EXPERT_DIMS)}")
        specs = {e: _spec(e, EXPERT_DIMS[e]) for e in experts}
    coat, where = meta_model(cfg, {} if cfg.model.no_think else specs)
    parts = count_parts(coat)
    dtype = resolved_dtype(cfg.model.dtype) if cfg.model.dtype != "auto" else "bfloat16"  # a plan is for GPUs
    width = {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
    total = sum(p.total for p in parts)
    trainable = sum(p.trainable for p in parts)
    clip_seconds = seconds if seconds is not None else 30.0
    tokens = math.ceil(min(clip_seconds, 30.0) * AUDIO_TOKENS_PER_SECOND) + text_tokens
    tokens += 0 if cfg.model.no_think else cfg.model.think_tokens + 2
    bucket = _reduce_bucket(cfg)
    memory = {
        "weights": total * width,
        "gradients": trainable * 4 // world + 2 * bucket * width,
        "optimizer": trainable * ADAM_BYTES // world,
    }
    text = _text_config(coat)
    with_ckpt = _activations(text, cfg, tokens, width, checkpointing=True)
    without = _activations(text, cfg, tokens, width, checkpointing=False)
    checkpointing = cfg.model.checkpointing
    memory["activations"] = with_ckpt if checkpointing else without
    memory["overhead"] = OVERHEAD_BYTES
    plan = TrainingPlan(
        backbone=str(cfg.model.backbone),
        config_source=where,
        parts=parts,
        world=world,
        gpu_bytes=gpu_bytes,
        dtype=dtype,
        batch_size=cfg.batch_size,
        batch_seconds=cfg.batch_seconds,
        grad_accum=cfg.grad_accum,
        clip_seconds=clip_seconds,
        tokens_per_clip=tokens,
        memory=memory,
        activations_other=without if checkpointing else with_ckpt,
        checkpointing=checkpointing,
        checkpoint_bytes=trainable * (width + ADAM_BYTES),
        checkpoint_bytes_with_frozen=total * width + trainable * ADAM_BYTES,
    )
    plan.suggestions = _suggestions(plan, cfg, text, tokens, width)
    return plan


def _spec(expert: str, dim: int) -> TargetSpec:
    import numpy as np

    kind = "pitch" if expert in ("pitch", "pitch-class") else "embedding"
    zeros, ones = np.zeros(dim, np.float32), np.ones(dim, np.float32)
    return TargetSpec(expert, kind, dim, "-", zeros, ones, zeros, ones)


def _reduce_bucket(cfg: TrainConfig) -> int:
    try:
        ds = json.loads(Path(cfg.ds_config).read_text())
    except (OSError, ValueError):
        return int(5e8)
    return int(float(ds.get("zero_optimization", {}).get("reduce_bucket_size", 5e8)))


def _activations(text: Any, cfg: TrainConfig, tokens: int, width: int, checkpointing: bool) -> int:
    """Bytes of activations of one micro-batch: the decoder layers, then the logits of the loss (the logits
    in the compute precision, their fp32 copy and its log-softmax for the backward)."""
    batch_tokens = cfg.batch_size * tokens
    layers, h = text.num_hidden_layers, text.hidden_size
    per_layer = _layer_activation_elements(text, cfg.model) * batch_tokens * width
    # The backward's working set on top: one layer's activation gradients (and, with checkpointing, the layer
    # being recomputed), measured against a CPU run in docs/PERFORMANCE.md (`coat-pipe bench plan`).
    decoder = layers * batch_tokens * h * width + 2 * per_layer if checkpointing else (layers + 1) * per_layer
    logits = batch_tokens * text.vocab_size * (width + 8)
    return decoder + logits


def _suggestions(plan: TrainingPlan, cfg: TrainConfig, text: Any, tokens: int, width: int) -> list[str]:
    """What would make a plan that does not fit fit: checkpointing, a smaller batch, more GPUs."""
    if plan.fits:
        return []
    found = []
    fixed = plan.total - plan.memory["activations"]
    if not plan.checkpointing and fixed + plan.activations_other <= plan.gpu_bytes:
        found.append("switch on gradient checkpointing (--gradient-checkpointing)")
    for batch in range(cfg.batch_size - 1, 0, -1):
        smaller = cfg.model_copy(update={"batch_size": batch})
        if fixed + _activations(text, smaller, tokens, width, plan.checkpointing) <= plan.gpu_bytes:
            found.append(
                f"--batch-size {batch} with --set grad_accum={math.ceil(cfg.batch_size * cfg.grad_accum / batch)}"
            )
            break
    partitioned = plan.memory["optimizer"] + plan.trainable * 4 // plan.world
    for world in (plan.world * 2, plan.world * 4, plan.world * 8):
        if plan.total - partitioned + partitioned * plan.world // world <= plan.gpu_bytes:
            found.append(f"{world} GPUs (ZeRO-2 partitions the optimizer states and gradients)")
            break
    return found or ["a smaller clip length or batch, or GPUs with more memory: nothing listed here is enough"]


def _gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB" if value >= GIB else f"{value / 2**20:.0f} MiB"


def print_plan(plan: TrainingPlan, gpu_bytes: int) -> None:
    """The plan as tables and a verdict on stdout."""
    from stages.progress import out, print_table

    rows = [(p.part, f"{p.total / 1e6:,.1f} M", f"{p.trainable / 1e6:,.2f} M") for p in plan.parts]
    rows.append(("total", f"{plan.parameters / 1e9:.3f} B", f"{plan.trainable / 1e6:,.2f} M"))
    out.print(f"{plan.backbone}, sizes from {plan.config_source}")
    print_table("parameters", ["part", "parameters", "trainable"], rows)
    other = "without" if plan.checkpointing else "with"
    memory = [(k, _gib(v)) for k, v in plan.memory.items()]
    memory += [
        ("total", _gib(plan.total)),
        (f"(activations {other} gradient checkpointing)", _gib(plan.activations_other)),
    ]
    out.print(
        f"ZeRO-2 on {plan.world} GPUs, {plan.dtype}, batch {plan.batch_size} × {plan.clip_seconds:g} s clips "
        f"({plan.tokens_per_clip} tokens each), gradient checkpointing {'on' if plan.checkpointing else 'off'}"
    )
    print_table("memory per GPU", ["", "bytes"], memory)
    if plan.batch_seconds is not None:  # the encoder pads every clip to its window: its cost is per clip
        out.print(
            f"--batch-seconds {plan.batch_seconds:g}: a micro-step holds at most {plan.batch_size} clips "
            f"(--batch-size) and {plan.batch_seconds:g} s of padded audio; the memory above is that cap's, the "
            "worst case. Padding depends on the corpus: training logs padding/audio and padding/tokens."
        )
    out.print(
        f"checkpoint: {plan.checkpoint_bytes / 1e9:.2f} GB each (trainable weights and optimizer states; "
        f"{plan.checkpoint_bytes_with_frozen / 1e9:.1f} GB with the frozen base)"
    )
    out.print(f"tokens per optimizer step: {plan.tokens_per_step:,} ({plan.world} GPUs × batch × accumulation)")
    verdict = "fits" if plan.fits else "does NOT fit"
    out.print(f"{verdict}: {_gib(plan.total)} of {_gib(gpu_bytes)} per GPU")
    for suggestion in plan.suggestions:
        out.print(f"  to fit: {suggestion}")


def fit_warning(cfg: TrainConfig, world: int, gpu_bytes: int, seconds: float) -> str | None:
    """The line `train` prints before step 1 when its plan says the run will not fit, else None."""
    plan = plan_training(cfg, world, gpu_bytes, seconds)
    if plan.fits:
        return None
    return (
        f"warning: the plan puts this run at {_gib(plan.total)} per GPU, beyond the {_gib(gpu_bytes)} here "
        f"(`coat-pipe train --plan` shows the parts); to fit: {'; '.join(plan.suggestions)}"
    )
