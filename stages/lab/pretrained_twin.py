"""The pretrained tiny twin: the random Qwen2-Audio twin, fully fine-tuned once (audio encoder, projector and
language model) on a synth task that no evaluated question asks, so that CoAT and its arms can start from an
audio LM that already listens and answers, as the paper's backbones do.

    coat-pipe twin                      # build it once (cached by its recipe); print where and how good

The task: "Describe the sounds in the clip and how long it is." → "note, noise; 3 s": the kinds of sound in
the order they first appear (tone, chirp, note, noise) and the clip's length in whole seconds. Its clips
come from a synth seed of their own, never one the quickstart trains or evaluates on. The skills overlap
with the evaluated questions (hearing a noise burst, telling sounds apart) as a pretrained model's would;
the questions and answers do not.

The folder is content-addressed: the same recipe (and RECIPE_VERSION) finds the same twin in the cache.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.optim.lr_scheduler import LambdaLR

from stages.file_manifest import cached_folder
from stages.lab.synth import DEFAULT_SECONDS, SynthClip, make_clip
from stages.progress import console, training_progress
from stages.train.backbones import BACKBONES, tiny_cache
from stages.train.batch import CoatSample, make_batch
from stages.train.config import ModelConfig, warmup_cosine
from stages.train.model import CoatModel

QUESTION = "Describe the sounds in the clip and how long it is."
RECIPE_VERSION = "1"  # bump when the task or the loop changes, so that cached twins are rebuilt
FAMILY = "qwen2-audio"


class TwinRecipe(BaseModel):
    """Everything that decides the pretrained twin's weights; its hash names the cached folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: int = 10  # the random twin's audio window (synth clips are at most 8 s)
    # The pretraining clips last 1 s to this (None: synth's default, 8 s); at most window_s.
    longest_clip_s: float | None = Field(default=None, ge=1.0)
    twin_seed: int = 0  # the random twin's init, and the pretraining's data order
    corpus_seed: int = 101  # synth seed of the pretraining clips (the quickstart's corpora use 0 and 1)
    train_clips: int = Field(default=1200, ge=8)
    heldout_clips: int = Field(default=120, ge=4)
    steps: int = Field(default=300, ge=1)
    batch_size: int = Field(default=8, ge=1)
    lr: float = 1e-3  # full fine-tune of a 64-wide model: far above a 7B model's rate
    warmup_steps: int = 20

    @model_validator(mode="after")
    def _clips_fit_the_window(self) -> TwinRecipe:
        if self.seconds_range[1] > self.window_s:
            raise ValueError(
                f"pretraining clips of up to {self.seconds_range[1]:g} s exceed the {self.window_s} s window"
            )
        return self

    @property
    def seconds_range(self) -> tuple[float, float]:
        return DEFAULT_SECONDS if self.longest_clip_s is None else (DEFAULT_SECONDS[0], self.longest_clip_s)

    def key(self) -> str:
        fields = self.model_dump()
        if self.longest_clip_s is None:  # a field added later: recipes without it keep their cached folders
            del fields["longest_clip_s"]
        text = json.dumps(fields | {"version": RECIPE_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def describe(clip: SynthClip) -> str:
    """The task's answer for a clip: its kinds of sound in order of first appearance, then its length."""
    kinds = dict.fromkeys(e.kind for e in sorted(clip.events, key=lambda e: e.start))
    return f"{', '.join(kinds)}; {max(1, round(clip.seconds))} s"


def describe_sample(seed: int, index: int, seconds_range: tuple[float, float] = DEFAULT_SECONDS) -> CoatSample:
    clip = make_clip(seed, index, seconds_range)
    return CoatSample(clip.key, clip.wave, QUESTION, describe(clip))


def twin_folder(recipe: TwinRecipe) -> Path:
    return tiny_cache() / f"pretrained-{FAMILY}-{recipe.key()}"


def pretrained_twin(recipe: TwinRecipe, progress: bool = True) -> Path:
    """The pretrained twin's folder for `recipe`: from the cache, or built now (a minute or two on 2 cores)."""
    return cached_folder(twin_folder(recipe), lambda tmp: build_pretrained_twin(recipe, tmp, progress))


def build_pretrained_twin(recipe: TwinRecipe, out: Path, progress: bool = True) -> dict[str, Any]:
    """Build the random twin, fine-tune every weight of it on the describe task, score it on held-out clips
    and save it to `out` (a model folder like any other, plus twin.json). Returns twin.json's record."""
    started = time.perf_counter()
    backbone = BACKBONES[FAMILY]
    random_twin = out / "random"
    backbone.build_tiny(random_twin, seed=recipe.twin_seed, window_s=recipe.window_s)
    model, processor = backbone.load(random_twin)
    shutil.rmtree(random_twin)
    for param in model.parameters():
        param.requires_grad_(True)  # the encoder and projector too: a full fine-tune
    torch.manual_seed(recipe.twin_seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    scheduler = LambdaLR(optimizer, warmup_cosine(recipe.steps, recipe.warmup_steps, 0.1))
    rng = np.random.default_rng(recipe.twin_seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    with training_progress(disable=not (progress and console.is_terminal)) as bar:
        task = bar.add_task("pretrain twin", total=recipe.steps, parts="")
        for step in range(recipe.steps):
            if len(order) < recipe.batch_size:  # a fresh permutation of the clips per epoch
                order += rng.permutation(recipe.train_clips).tolist()
            picked, order = order[: recipe.batch_size], order[recipe.batch_size :]
            batch = make_batch(
                [describe_sample(recipe.corpus_seed, i, recipe.seconds_range) for i in picked],
                backbone,
                processor,
                None,
                {},
            )
            loss = model(**batch.inputs, labels=batch.labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update(task, completed=step + 1, parts=f"loss {np.mean(losses[-20:]):.3f}")
    trained_s = time.perf_counter() - started
    record = {
        "recipe": recipe.model_dump(),
        "recipe_version": RECIPE_VERSION,
        "task": QUESTION,
        "heldout": score_describe(model, processor, recipe),
        "loss_start": float(np.mean(losses[: max(1, len(losses) // 10)])),  # the first tenth of the steps
        "loss_end": float(np.mean(losses[-max(1, len(losses) // 10) :])),  # the last tenth
        "losses": [round(x, 5) for x in losses],
        "train_seconds": round(trained_s, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "twin.json").write_text(json.dumps(record, indent=1))
    return record


@torch.inference_mode()
def score_describe(model: Any, processor: Any, recipe: TwinRecipe) -> dict[str, float]:
    """Greedy descriptions of the held-out clips (the indices after the training ones): the share exactly
    right, and of the two parts (the kinds of sound, the length) each."""
    from stages.evaluate.answer import answer

    model.eval()
    config = ModelConfig(backbone=f"tiny-{FAMILY}", no_think=True)
    asking = CoatModel(config, BACKBONES[FAMILY], "pretraining", model, processor, None, {})
    exact = kinds = length = 0
    indices = range(recipe.train_clips, recipe.train_clips + recipe.heldout_clips)
    for start in range(0, len(indices), 16):
        samples = [describe_sample(recipe.corpus_seed, i, recipe.seconds_range) for i in indices[start : start + 16]]
        said = answer(asking, [s.wave for s in samples], [s.question for s in samples], max_new_tokens=16)
        for sample, reply in zip(samples, said, strict=True):
            got, want = reply.text.partition(";"), sample.answer.partition(";")
            exact += reply.text == sample.answer
            kinds += got[0].strip() == want[0].strip()
            length += got[2].strip() == want[2].strip()
    n = recipe.heldout_clips
    return {"clips": n, "exact": exact / n, "kinds": kinds / n, "length": length / n}
