"""Samples (audio, question, answer, stored targets) and their collation into one model batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import BatchFeature, ProcessorMixin

from stages.audio import decode_audio, resample
from stages.train.backbones.base import SAMPLE_RATE, Backbone
from stages.train.prompt import encode_conversations
from stages.train.targets import SlotTargets, TargetSpec, make_targets
from stages.train.think import ThinkIds
from store_schema.corpus import conversation_turns, iter_tar_samples, read_corpus, sample_audio, sample_meta
from store_schema.layout import Status
from store_schema.reader import ShardStore


@dataclass
class CoatSample:
    key: str
    wave: np.ndarray  # mono float32 at 16 kHz
    question: str  # the first user turn's text
    answer: str  # the first assistant turn's text
    frames: dict[str, np.ndarray | None] = field(default_factory=dict)  # expert -> (T, D) store frames
    clip: dict[str, np.ndarray | None] = field(default_factory=dict)  # expert -> (D,) clip target
    choices: list[str] | None = None  # the allowed answers, when the sample's json lists them (closed sets)


@dataclass
class CoatBatch:
    keys: list[str]
    inputs: BatchFeature  # what the backbone's forward takes: input_ids, attention_mask, audio features
    labels: torch.Tensor  # (B, L): -100 outside the response and its end token
    targets: dict[str, SlotTargets]  # expert -> targets (empty for --no-think)


def coat_sample(key: str, entries: dict, frames: dict, clips: dict, where: str = "") -> CoatSample:
    """A CoatSample from a tar sample's entries (audio + json) and its store targets.

    Raises ValueError (or AudioError) naming `where` (the tar) and the key for a sample that cannot be
    trained on: no audio, undecodable audio, a json entry without a usable conversation, non-finite targets.
    """
    name = f"{where}: {key}" if where else key
    audio = sample_audio(entries)
    if audio is None:
        raise ValueError(f"{name}: no audio entry in the tar sample")
    wave, rate = decode_audio(audio[0], f"{name}.{audio[1]}")
    meta = sample_meta(entries, name)
    question, answer = conversation_turns(meta["messages"])
    for expert, values in (*frames.items(), *clips.items()):
        if values is not None and not np.isfinite(values).all():
            raise ValueError(f"{name}: the store's {expert!r} targets hold NaN or Inf; run coat-pipe store check")
    choices = meta.get("choices")
    if choices is not None and not (isinstance(choices, list) and choices and all(isinstance(c, str) for c in choices)):
        raise ValueError(f'{name}: "choices" must be a non-empty list of strings')
    return CoatSample(key, resample(wave, rate, SAMPLE_RATE), question, answer, frames, clips, choices)


def read_samples(corpus_root: Path, experts: list[str], limit: int | None = None) -> list[CoatSample]:
    """Every clip of a corpus with its stored targets, in order (clips with a bad status are skipped).
    For tests and small experiments; training streams through `stages.train.data`."""
    corpus = read_corpus(corpus_root)
    samples: list[CoatSample] = []
    for shard in corpus.shards:
        store = ShardStore.for_tar(corpus.tar_path(shard))
        groups = {e: store.expert(e) for e in experts}
        for index, raw in enumerate(iter_tar_samples(corpus.tar_path(shard))):
            if limit is not None and len(samples) >= limit:  # checked first: a limit of 0 reads nothing
                return samples
            if any(g.status[index] != Status.OK for g in groups.values()):
                continue
            frames = {e: g.frames_of(index) for e, g in groups.items()}
            clips = {e: g.clip[index] for e, g in groups.items()}
            samples.append(coat_sample(raw["__key__"], raw, frames, clips, corpus.tar_path(shard).name))
    return samples


def response_labels(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, response_ids: list[list[int]]
) -> torch.Tensor:
    """-100 everywhere but each row's last len(response) attended tokens, which must equal the response."""
    labels = torch.full_like(input_ids, -100)
    for row, ids in enumerate(response_ids):
        attended = attention_mask[row].nonzero().squeeze(-1)
        positions = attended[-len(ids) :]
        if input_ids[row, positions].tolist() != ids:
            raise ValueError(f"row {row}: the response did not tokenize the same inside the conversation")
        labels[row, positions] = input_ids[row, positions]
    return labels


def make_batch(
    samples: list[CoatSample],
    backbone: Backbone,
    processor: ProcessorMixin,
    think: ThinkIds | None,
    specs: dict[str, TargetSpec],
) -> CoatBatch:
    """Texts in the backbone's chat template with the block opening the assistant turn; labels; targets."""
    responses = [s.answer + backbone.end_of_turn for s in samples]
    keys, waves, questions = [s.key for s in samples], [s.wave for s in samples], [s.question for s in samples]
    k = len(think.slots) if think else 0
    inputs = encode_conversations(backbone, processor, k, keys, waves, questions, responses)
    response_ids = [processor.tokenizer(r, add_special_tokens=False)["input_ids"] for r in responses]
    labels = response_labels(inputs["input_ids"], inputs["attention_mask"], response_ids)
    targets = {}
    if think is not None:
        k = len(think.slots)
        targets = {
            e: make_targets(spec, [s.frames.get(e) for s in samples], [s.clip.get(e) for s in samples], k)
            for e, spec in specs.items()
        }
    return CoatBatch([s.key for s in samples], inputs, labels, targets)
