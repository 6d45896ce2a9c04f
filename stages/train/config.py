"""The typed settings of the CoAT model: backbone, thinking block, LoRA, heads and loss weights."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


REAL_BACKBONES = ("qwen2-audio", "qwen2.5-omni", "af3")  # each has a `tiny-` twin (stages/train/backbones/)
TINY_PREFIX = "tiny-"


def backbone_choices() -> str:
    return ", ".join([*REAL_BACKBONES, *(TINY_PREFIX + n for n in REAL_BACKBONES)])


class ModelConfig(BaseModel):
    """Written into every run directory and bundle (`config.yaml`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    backbone: str | None = None  # required: qwen2-audio | qwen2.5-omni | af3, or a tiny- twin (tests, quickstart)
    model_path: str | None = None  # local dir or hub id instead of the backbone's default
    # auto: bfloat16 where a CUDA device supports it, else float32 (the weights load in it directly)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    # Recompute each decoder layer in the backward pass instead of keeping its activations; None: on for
    # the real backbones (the activations of 7B layers dominate a GPU), off for the tiny twins.
    gradient_checkpointing: bool | None = None
    think_tokens: int = Field(default=32, ge=1)  # K, the thinking positions
    no_think: bool = False  # the baseline: no block, no heads, same LoRA
    # Hidden-state layer the heads read (0 = embeddings, N = last). Default: 2/3 of the depth, so the block
    # has attended to the audio through most of the stack while the last third stays free to turn what it
    # holds into the answer, rather than the distillation pulling on the very states that predict tokens.
    think_layer: int | None = Field(default=None, ge=0)  # its upper bound, the depth, is checked before the run
    lora_rank: int = Field(default=16, ge=0)  # 0: the whole language model trains (full fine-tuning)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_targets: list[str] = Field(default_factory=lambda: list(LORA_TARGETS))  # linear layers of the LM only
    train_projector: bool = False  # the audio-to-text projector trains in full (frozen by default)
    # the audio encoder: frozen (default), LoRA on its attention and MLP layers, or every weight
    train_audio_encoder: Literal["frozen", "lora", "full"] = "frozen"
    distill_weight: float = Field(default=1.0, ge=0)  # λ in L = L_lm + λ Σ_e w_e L_e; 0: the block control
    expert_weights: dict[str, float] = {}  # w_e; default 1 for every expert
    head_width: int | None = Field(default=None, ge=1)  # default: min(256, the backbone's hidden size)
    head_layers: int = Field(default=2, ge=1)
    head_heads: int = Field(default=4, ge=1)  # attention heads of each head; they divide head_width
    # The positive control (stages/train/oracle.py): the block's input embeddings also receive a learned
    # linear map of the clip's true slot targets, in training and at test (evaluation reads them from the store)
    oracle: bool = False

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str | None) -> str | None:
        if value is not None and value.removeprefix(TINY_PREFIX) not in REAL_BACKBONES:
            raise ValueError(f"unknown backbone {value!r}; choose one of {backbone_choices()}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.backbone is None:
            raise ValueError(f"no backbone given: choose one with --backbone ({backbone_choices()})")
        if self.lora_rank == 0 and self.train_audio_encoder == "lora":
            raise ValueError("train_audio_encoder: lora needs lora_rank > 0 (lora_rank 0 trains the LM in full)")
        if self.oracle and self.no_think:
            raise ValueError("oracle needs the thinking block: it feeds the targets into the block (drop no_think)")
        if self.lora_rank > 0 and not self.lora_targets:
            raise ValueError("lora_targets is empty: name the LM's linear layers LoRA adapts (or set lora_rank 0)")
        if self.head_width is not None and self.head_width % self.head_heads:
            raise ValueError(f"head_heads {self.head_heads} does not divide head_width {self.head_width}")
        negative = {e: w for e, w in self.expert_weights.items() if w < 0}
        if negative:
            raise ValueError(f"expert_weights must be ≥ 0, got {negative}")
        return self

    @property
    def is_tiny(self) -> bool:
        return str(self.backbone).startswith(TINY_PREFIX)

    @property
    def checkpointing(self) -> bool:
        """Whether gradient checkpointing is on: the setting, else on for real backbones only."""
        return self.gradient_checkpointing if self.gradient_checkpointing is not None else not self.is_tiny

    def resolved_think_layer(self, num_layers: int) -> int:
        layer = self.think_layer if self.think_layer is not None else round(2 * num_layers / 3)
        if not 0 <= layer <= num_layers:
            raise ValueError(f"think_layer must lie in [0, {num_layers}], got {layer}")
        return layer


def resolved_dtype(name: str) -> str:
    """`auto` -> bfloat16 where a CUDA device with bf16 is used, else float32; other names unchanged."""
    if name != "auto":
        return name
    import torch

    on_gpu = torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu"
    return "bfloat16" if on_gpu and torch.cuda.is_bf16_supported() else "float32"


class CorpusConfig(BaseModel):
    """One corpus of a mixture (or of the validation sets)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: str  # extracted corpus (tars + store + stats): a folder, or an object-store URL
    weight: float = Field(default=1.0, gt=0)  # its share of the micro-steps is weight / the sum of weights
    experts: list[str] | None = None  # the experts it holds targets for; default: the run's `experts`
    name: str | None = None  # in logs; default: the folder's name

    @field_validator("path", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @property
    def label(self) -> str:
        return self.name or self.path.rstrip("/").rsplit("/", 1)[-1]


def parse_corpus_flag(text: str) -> dict[str, Any]:
    """`PATH`, `PATH:WEIGHT` or `NAME=PATH[:WEIGHT]` (an s3:// URL's own colon is left alone)."""
    name, sep, rest = text.partition("=")
    if not sep or "/" in name:
        name, rest = "", text
    path, colon, weight = rest.rpartition(":")
    entry: dict[str, Any] = {"path": rest}
    if colon and path and not weight.startswith("//"):
        try:
            entry = {"path": path, "weight": float(weight)}
        except ValueError:
            entry = {"path": rest}
    return entry | ({"name": name} if name else {})


class TrainConfig(BaseModel):
    """Stage two. Written in full to RUN/config.yaml; YAML file first, then CLI flags. Every number has its
    range here (NaN and infinities refused), so a setting out of range stops the run before anything is
    written."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    corpus: str | None = None  # one extracted corpus: a folder, or an object-store URL (a mixture of one)
    corpora: list[CorpusConfig] = []  # a weighted mixture instead: [{path, weight, experts, name}]
    val_corpora: list[CorpusConfig] = []  # evaluated every `eval_every` steps and at the end (weights unused)
    eval_every: int | None = Field(default=None, ge=1)  # default: at the end only
    best_metric: str = "loss"  # the first validation set's `loss`, or e.g. "val/heldout/accuracy"
    out: Path  # the run directory
    experts: list[str] = []  # store experts to distil; default: every expert with a stats file
    model: ModelConfig  # model.backbone has no default: a real run names its backbone
    steps: int = Field(default=200, ge=1)  # optimizer steps
    batch_size: int = Field(default=4, ge=1)  # clips per rank per micro-step (with batch_seconds: the most)
    # audio seconds per rank per micro-step, as clips × the longest clip: batches filled to this budget from
    # duration buckets instead of a fixed count
    batch_seconds: float | None = Field(default=None, gt=0)
    grad_accum: int = Field(default=1, ge=1)
    lr: float = Field(default=2e-4, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)  # cosine decays to lr × this
    warmup_steps: int = Field(default=10, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float = Field(default=1.0, ge=0)  # 0: no clipping (DeepSpeed's convention)
    schedule: Literal["two-stage", "joint"] = "two-stage"  # two-stage: `align` (distillation only), then `joint`
    align_fraction: float = Field(default=0.3, ge=0, le=1)  # share of steps in the align stage
    seed: int = 0
    shuffle_window: int = Field(default=256, ge=1)  # clips shuffled together in an epoch (after the shard order)
    num_workers: int = Field(default=2, ge=0)  # DataLoader workers per rank
    log_every: int = Field(default=1, ge=1)
    save_every: int = Field(default=50, ge=1)  # checkpoint every N steps (and at the end)
    keep_checkpoints: int = Field(default=3, ge=1)  # the newest N checkpoints stay (and `latest`, `best`)
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = ["tensorboard"]  # where metrics.jsonl goes too
    run_name: str | None = None  # the trackers' run name (default: the run folder's name)
    run_group: str | None = None  # e.g. the experiment; W&B group, an MLflow tag
    run_tags: list[str] = []  # e.g. the arm: coat, baseline, control
    resume: bool = False  # continue from RUN/checkpoints/latest
    ds_config: Path = Path(__file__).resolve().parents[2] / "launch" / "ds_zero2.json"

    @field_validator("corpus", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _one_source(self) -> TrainConfig:
        if self.corpus is None and not self.corpora:
            raise ValueError("no corpus given: pass --corpus DIR (repeat it, DIR:WEIGHT, for a mixture)")
        if self.corpus is not None and self.corpora:
            raise ValueError("give either corpus or corpora, not both")
        labels = [c.label for c in self.training_corpora]
        if len(set(labels)) != len(labels) or len({c.label for c in self.val_corpora}) != len(self.val_corpora):
            raise ValueError(
                f"corpora need distinct names (name: …), got {labels + [c.label for c in self.val_corpora]}"
            )
        return self

    @property
    def training_corpora(self) -> list[CorpusConfig]:
        """The mixture: `corpora`, or the one `corpus`."""
        return self.corpora or [CorpusConfig(path=str(self.corpus))]

    @field_validator("experts", "report_to", "run_tags", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @property
    def align_steps(self) -> int:
        """Steps of the `align` stage. A baseline (no block) and the block control (λ = 0) have nothing to
        align, so every step of theirs is a joint step."""
        if self.schedule != "two-stage" or self.model.no_think or self.model.distill_weight == 0:
            return 0
        return round(self.steps * self.align_fraction)


# Settings a resumed run may change: none of them alters what the steps already taken computed.
# (`ds_config` is a path; the DeepSpeed settings it yields are compared on their own. `out` changes
# when a run directory is moved.)
RESUMABLE_CHANGES = (
    "steps", "save_every", "log_every", "num_workers", "resume", "ds_config", "out", "keep_checkpoints", "report_to",
    "eval_every",
)  # fmt: skip


def flatten_settings(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"lora_rank": 16}} -> {"model.lora_rank": 16}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat |= flatten_settings(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def settings_changes(saved: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Compare a run's saved config with a resume's: (refused changes as "key: old → new", allowed ones)."""
    old, new = flatten_settings(saved), flatten_settings(current)
    refused, allowed = [], {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key) or key == "resume":
            continue
        if key in RESUMABLE_CHANGES:
            allowed[key] = new.get(key)
        else:
            refused.append(f"{key}: {old.get(key, '(unset)')} → {new.get(key, '(unset)')}")
    return refused, allowed


def warmup_cosine(steps: int, warmup_steps: int, min_lr_ratio: float) -> Callable[[int], float]:
    """LambdaLR's multiplier: linear warm-up over `warmup_steps`, then cosine down to `min_lr_ratio`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
