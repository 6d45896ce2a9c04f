"""The quickstart's settings (its own, plus overrides of `TrainConfig` every run shares) and its folder layout."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stages.config_files import config_dict, merge_settings
from stages.lab.pretrained_twin import TwinRecipe
from stages.train.config import TrainConfig, flatten_settings

# The arms of every seed, with their TrainConfig settings (`coat-pipe train` flags: none, --no-think,
# --block-control). base: no block, no heads; control: the same block and heads as CoAT with λ = 0, so any
# difference from CoAT is the supervision's. All three share the LoRA initialisation, data order and steps
# of their seed (CoAT and the control also the block rows and heads).
# oracle (the confirmatory design's positive control): the control's block, given the clips' true targets
# at its input (stages/train/oracle.py). coat-pc, oracle-pc (the fifth registration's pitch-class target):
# CoAT and the oracle with `pitch-class` (pitch plus the sine and cosine of the pitch class) for `pitch`.
PITCH_CLASS_EXPERTS = ["mel", "pitch-class"]
ARMS: dict[str, dict[str, Any]] = {
    "coat": {},
    "base": {"model": {"no_think": True}},
    "control": {"model": {"distill_weight": 0.0}},
    "oracle": {"model": {"distill_weight": 0.0, "oracle": True}},
    "coat-pc": {"experts": PITCH_CLASS_EXPERTS},
    "oracle-pc": {"experts": PITCH_CLASS_EXPERTS, "model": {"distill_weight": 0.0, "oracle": True}},
}
VARIANTS = ("coat", "base", "control")  # the demonstration's arms
LABELS = {
    "coat": "CoAT",
    "base": "baseline",
    "control": "control",
    "oracle": "oracle",
    "coat-pc": "CoAT (pitch class)",
    "oracle-pc": "oracle (pitch class)",
}
DOSE_PREFIX = "coat-lambda"  # a dose arm: CoAT with another λ (the fifth registration's dose-response)


def dose_arm(weight: float) -> str:
    """The arm name of CoAT at λ = `weight`: coat-lambda0.3."""
    return f"{DOSE_PREFIX}{weight:g}"


def arm_settings(arm: str) -> dict[str, Any]:
    """The TrainConfig settings that make `arm` what it is (its `coat-pipe train --sweep` entry, less name/seed)."""
    if arm.startswith(DOSE_PREFIX):
        return {"model": {"distill_weight": float(arm.removeprefix(DOSE_PREFIX))}}
    return ARMS[arm]


def arm_label(arm: str) -> str:
    if arm.startswith(DOSE_PREFIX):
        return f"CoAT λ={arm.removeprefix(DOSE_PREFIX)}"
    return LABELS[arm]


# TrainConfig settings of every run; corpus, out, seed, --no-think and the model's path come per run.
# Why these values: docs/EXPERIMENTS.md.
TRAIN_DEFAULTS: dict[str, Any] = {
    "experts": ["mel", "pitch"],
    "steps": 400,
    "batch_size": 2,  # clips per rank per step
    "lr": 3e-3,
    "schedule": "joint",
    "num_workers": 1,
    "log_every": 1,
    "save_every": 50,
    "model": {
        "backbone": "tiny-qwen2-audio",
        "think_tokens": 32,
        "think_layer": None,  # 2/3 of the depth
        "distill_weight": 1.0,
        "lora_rank": 16,
    },
}


class QuickstartConfig(BaseModel):
    """The experiment: corpus sizes, seeds, ranks, and `train`, overrides of TrainConfig's defaults."""

    model_config = ConfigDict(extra="forbid")

    seeds: int = Field(default=3, ge=1)  # each seed: model init of LoRA/heads/block and data order
    train_clips: int = Field(default=600, ge=12)
    heldout_clips: int = Field(default=240, ge=12)
    window_s: int = 10  # the twin's audio window: synth clips are at most 8 s
    ranks: int = 2  # DeepSpeed CPU ranks
    # Threads per rank, fixed rather than cores // ranks: the thread count changes the order of float
    # reductions, so the same runs on a machine with more cores would give other digits.
    threads_per_rank: int = Field(default=1, ge=1)
    # Held-out clips the probes read (of heldout_clips): 120 since 2026-12-05, to keep the quickstart within
    # 12 minutes on the slower 2-core machine (docs/EXPERIMENTS.md, third pre-registration)
    probe_clips: int = 120
    # Every arm starts from the twin pretrained by this recipe (built once per machine, cached); null: from
    # the random twin, as before 2026-12-01.
    twin: TwinRecipe | None = Field(default_factory=TwinRecipe)
    train: dict[str, Any] = Field(default_factory=lambda: copy.deepcopy(TRAIN_DEFAULTS))

    @model_validator(mode="after")
    def _one_window(self) -> QuickstartConfig:
        if self.twin is not None and self.twin.window_s != self.window_s:
            raise ValueError(f"twin.window_s ({self.twin.window_s}) must equal window_s ({self.window_s})")
        return self

    @classmethod
    def train_defaults(cls) -> dict[str, Any]:
        return TRAIN_DEFAULTS

    @field_validator("train", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        """A YAML or flag that sets `train.lr` changes lr only: every other default stays."""
        if not isinstance(value, dict):
            return value
        merged = merge_settings(copy.deepcopy(cls.train_defaults()), value)
        TrainConfig.model_validate({**merged, "corpus": ".", "out": "."})  # a typo or a bad value fails here
        return merged

    def run_config(self, corpus: Path, out: Path) -> TrainConfig:
        """The TrainConfig of one run (seed and --no-think come as that run's flags)."""
        return TrainConfig.model_validate({**self.train, "corpus": corpus, "out": out})

    @property
    def training(self) -> TrainConfig:
        """The shared settings, typed (for reading them: corpus and out are placeholders)."""
        return self.run_config(Path("."), Path("."))

    @property
    def arms(self) -> tuple[str, ...]:
        return VARIANTS

    @property
    def extracted(self) -> list[str]:
        """Every expert some arm trains on, in order of first use: what the extract phase writes."""
        names = [*self.training.experts, *(e for arm in self.arms for e in arm_settings(arm).get("experts", []))]
        return list(dict.fromkeys(names))

    def run_names(self) -> list[str]:
        return [f"{variant}-seed{seed}" for seed in range(self.seeds) for variant in self.arms]


class QuickstartLayout:
    """Where every phase writes under DIR; the report reads the same paths."""

    def __init__(self, out: Path, cfg: QuickstartConfig) -> None:
        self.out, self.cfg = out, cfg
        self.train_corpus, self.heldout = out / "data" / "train", out / "data" / "heldout"
        self.model_dir, self.logs, self.runs = out / "model", out / "logs", out / "runs"
        if isinstance(cfg, ConfirmConfig):  # three splits; "heldout" is the test split
            self.heldout, self.validation = out / "data" / "test", out / "data" / "validation"


# --- the confirmatory design (`coat-pipe quickstart --confirm`; docs/EXPERIMENTS.md, fourth registration) ----
TARGET_TASKS = ("pitch_level", "pitch_direction", "louder_half")  # answers the mel and pitch targets carry
CONFIRM_ARMS = ("base", "control", "coat", "oracle")
# Over TRAIN_DEFAULTS; chosen on the validation split only (docs/EXPERIMENTS.md, "A learnable miniature").
# Each run is scored on the validation split at its end (train's default with val_corpora); every 200 steps
# would cost 4 of the 60 minutes, and the curves were drawn on the validation-only runs that chose these.
CONFIRM_TRAIN: dict[str, Any] = merge_settings(
    copy.deepcopy(TRAIN_DEFAULTS),
    {
        "save_every": 100,
        "log_every": 5,
        "model": {"train_projector": True, "train_audio_encoder": "lora"},
    },
)
SPLIT_SEEDS = {"train": 0, "validation": 2, "test": 7}  # synth seeds: no clip of one split is in another


class ConfirmConfig(QuickstartConfig):
    """The powered design: train, validation and test splits of the target-carried question types, ≥ 6
    seeds, four arms (baseline, control, CoAT, oracle), likelihood scoring on the test split."""

    # The registered decision, each contrast (a, b) read as b − a: the gate (can the block carry the targets
    # into answers here?) first, the primary contrast only if the gate passes.
    gate: ClassVar[tuple[str, str]] = ("control", "oracle")
    primary: ClassVar[tuple[str, str]] = ("control", "coat")  # CoAT − control: the supervision alone

    seeds: int = Field(default=6, ge=1)
    train_clips: int = Field(default=1200, ge=12)
    validation_clips: int = Field(default=300, ge=12)
    heldout_clips: int = Field(default=1200, ge=12)  # the test split, scored once per run
    tasks: tuple[str, ...] = TARGET_TASKS
    # Every clip of the three splits this long (None: 1-8 s, synth's default); at most window_s.
    clip_seconds: float | None = Field(default=None, ge=0.5)
    # Extra CoAT arms at these λ (`--doses 0.3,3`: the fifth registration); none in the fourth's design.
    doses: tuple[float, ...] = ()
    train: dict[str, Any] = Field(default_factory=lambda: copy.deepcopy(CONFIRM_TRAIN))

    @classmethod
    def train_defaults(cls) -> dict[str, Any]:
        return CONFIRM_TRAIN

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from stages.lab.synth import check_tasks

        return check_tasks(value)

    @model_validator(mode="after")
    def _clips_fit_the_window(self) -> ConfirmConfig:
        from stages.lab.synth import DEFAULT_SECONDS

        longest = DEFAULT_SECONDS[1] if self.clip_seconds is None else self.clip_seconds
        if longest > self.window_s:
            raise ValueError(f"clips of up to {longest:g} s do not fit the twin's {self.window_s} s window")
        return self

    @model_validator(mode="after")
    def _new_doses(self) -> ConfirmConfig:
        coat = self.training.model.distill_weight
        if any(w <= 0 or w == coat for w in self.doses) or len(set(self.doses)) != len(self.doses):
            doses = ",".join(f"{w:g}" for w in self.doses)
            raise ValueError(f"doses {doses}: distinct λ > 0 other than CoAT's {coat:g} (λ = 0 is the control)")
        return self

    @property
    def arms(self) -> tuple[str, ...]:
        return CONFIRM_ARMS + tuple(dose_arm(w) for w in self.doses)

    @property
    def contrasts(self) -> tuple[tuple[str, str], ...]:
        """Every contrast the report gives: the gate, the primary, then the descriptive ones."""
        return (self.gate, self.primary, ("base", "coat"), ("base", "control"))


# --- the sixth registration: clips of one length, a twin with a window that fits them, the whole encoder ----
# Chosen on the validation split only (docs/EXPERIMENTS.md, "The tries, continued"): with every clip 4 s long,
# "half" of a clip is the same span in every clip; with the whole audio encoder trained the baseline learns
# all three target-carried types at 800 steps, two at 500, the most that 24 runs in 60 minutes allow.
SHORT_CLIP_S = 4.0
SIXTH_STEPS = 500
SIXTH_TRAIN: dict[str, Any] = merge_settings(
    copy.deepcopy(CONFIRM_TRAIN), {"steps": SIXTH_STEPS, "model": {"train_audio_encoder": "full"}}
)


class SixthConfig(ConfirmConfig):
    """The fourth's design with 4 s clips, a 4 s twin window and the whole audio encoder trained."""

    window_s: int = 4
    clip_seconds: float | None = Field(default=SHORT_CLIP_S, ge=0.5)
    twin: TwinRecipe | None = Field(default_factory=lambda: TwinRecipe(window_s=4, longest_clip_s=SHORT_CLIP_S))
    train: dict[str, Any] = Field(default_factory=lambda: copy.deepcopy(SIXTH_TRAIN))

    @classmethod
    def train_defaults(cls) -> dict[str, Any]:
        return SIXTH_TRAIN


# --- the seventh registration: the sixth with a twin pretrained four times as long on four times the clips ---
# Chosen on the validation split only (docs/EXPERIMENTS.md, "The tries after the sixth"): the longer-pretrained
# twin describes held-out clips 76 % exactly right (the sixth's 42 %), and from it the baseline learns all
# three target-carried types in the sixth's 500 steps. The twin is built once per machine, so each of the 24
# runs costs what the sixth's did.
SEVENTH_TWIN = TwinRecipe(window_s=4, longest_clip_s=SHORT_CLIP_S, steps=1200, train_clips=4800)


class SeventhConfig(SixthConfig):
    """The sixth's design from the twin pretrained by SEVENTH_TWIN."""

    twin: TwinRecipe | None = Field(default_factory=lambda: SEVENTH_TWIN)


# --- the fifth registration's second part: a pitch-class target for note_name ------------------------------
PITCH_CLASS_ARMS = ("control", "coat", "coat-pc", "oracle-pc")


class PitchClassConfig(ConfirmConfig):
    """The fourth's splits, twin and training, on `note_name` only; CoAT with the pitch class against CoAT
    with cents alone, gated by an oracle given the pitch-class targets (docs/EXPERIMENTS.md, fifth)."""

    tasks: tuple[str, ...] = ("note_name",)
    gate: ClassVar[tuple[str, str]] = ("control", "oracle-pc")
    primary: ClassVar[tuple[str, str]] = ("coat", "coat-pc")  # what the pitch class adds to cents

    @model_validator(mode="after")
    def _no_doses(self) -> PitchClassConfig:
        if self.doses:
            raise ValueError("the pitch-class design has no λ arms: --doses goes with another --design")
        return self

    @property
    def arms(self) -> tuple[str, ...]:
        return PITCH_CLASS_ARMS

    @property
    def contrasts(self) -> tuple[tuple[str, str], ...]:
        return (self.gate, self.primary, ("control", "coat"), ("control", "coat-pc"))


# `coat-pipe quickstart --confirm --design NAME`: the registered designs, by the registration that defines them
DESIGNS: dict[str, type[ConfirmConfig]] = {
    "fourth": ConfirmConfig,
    "sixth": SixthConfig,
    "seventh": SeventhConfig,
    "pitch-class": PitchClassConfig,
}


def design_of(settings: dict[str, Any]) -> str | None:
    """The registered design a folder's settings (its quickstart.yaml) were made with: the one design whose
    defaults they keep wherever the designs' defaults differ; None when none or several fit."""
    defaults = {name: flatten_settings(config_dict(cls())) for name, cls in DESIGNS.items()}
    keys = {k for flat in defaults.values() for k in flat if len({repr(d.get(k)) for d in defaults.values()}) > 1}
    held = flatten_settings(settings)
    fits = [name for name, flat in defaults.items() if all(held.get(k) == flat.get(k) for k in keys)]
    return fits[0] if len(fits) == 1 else None
