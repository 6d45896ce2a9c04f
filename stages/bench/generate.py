"""`coat-pipe bench generate`: what the thinking block costs at inference, CoAT against the baseline.

Both models are the same backbone weights with the same (zero-initialised) LoRA, asked the same
prompts in the same process, turn by turn; the only difference is the K-token block in CoAT's prompt.
A clock watches each decoding step of one `generate` call of N forced tokens: time to first token
runs from the call to the first step's logits (processor, audio encoder, prefill); per-token decode
time is the median interval between later steps. Medians over the repeats.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from stages.evaluate.answer import answer, encode_prompts, for_inference
from stages.train.backbones.base import SAMPLE_RATE
from stages.train.config import ModelConfig
from stages.train.model import CoatModel

QUESTION = "Describe the sound, then say whether its pitch rises or falls."


def _clip(seconds: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    return (0.2 * np.sin(2 * np.pi * (220 + 110 * t) * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


class StepClock(LogitsProcessor):
    """Notes the time at each decoding step; changes nothing."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times = device, []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times.append(time.perf_counter())
        return scores


def _clocked(model: CoatModel, waves: list[np.ndarray], questions: list[str], tokens: int, device: torch.device):  # noqa: ANN202
    """(time to first token, median seconds per later token) of one generate call."""
    clock = StepClock(device)
    start = time.perf_counter()
    answer(model, waves, questions, tokens, tokens, observers=[clock])
    return clock.times[0] - start, statistics.median(np.diff(clock.times))


def bench_generate(
    backbone: str = "tiny-qwen2-audio",
    think_tokens: int = 32,
    seconds: float = 10.0,
    batch_size: int = 1,
    max_new_tokens: int = 32,
    repeats: int = 5,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, Any]:
    """Ratios CoAT / baseline of time to first token and per-token decode time, and the targets."""
    torch.manual_seed(0)
    models = {
        "coat": CoatModel.build(ModelConfig(backbone=backbone, think_tokens=think_tokens, dtype=dtype), {}),
        "base": CoatModel.build(ModelConfig(backbone=backbone, no_think=True, dtype=dtype), {}),
    }
    target = torch.device(device)
    models = {name: for_inference(model, target) for name, model in models.items()}
    waves = [_clip(seconds, i) for i in range(batch_size)]
    questions = [QUESTION] * batch_size
    prompt_length = int(encode_prompts(models["base"], waves[:1], questions[:1])["input_ids"].shape[1])
    tokens = max(2, max_new_tokens)
    runs = {name: partial(_clocked, model, waves, questions, tokens, target) for name, model in models.items()}
    ratios = _coat_against_base(runs, repeats)
    return {
        "prompt_tokens_baseline": prompt_length,
        "think_tokens": think_tokens,
        "ttft_target": 1 + think_tokens / prompt_length + 0.05,
        **ratios,
    }


def _coat_against_base(runs: dict[str, Callable[[], tuple[float, float]]], repeats: int) -> dict[str, float]:
    """Run each variant's clocked call in turn, `repeats` times after a warm-up round; medians and ratios."""
    first: dict[str, list[float]] = {name: [] for name in runs}
    step: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats + 1):  # the first round warms up and is not counted
        for name, run in runs.items():
            ttft_s, step_s = run()
            if repeat:
                first[name].append(ttft_s)
                step[name].append(step_s)
    ttft = {n: statistics.median(v) for n, v in first.items()}
    decode = {n: statistics.median(v) for n, v in step.items()}
    return {
        "ttft_base_s": ttft["base"],
        "ttft_coat_s": ttft["coat"],
        "ttft_ratio": ttft["coat"] / ttft["base"],
        "decode_base_ms_per_token": 1000 * decode["base"],
        "decode_coat_ms_per_token": 1000 * decode["coat"],
        "decode_ratio": decode["coat"] / decode["base"],
        "decode_target": 1.02,
    }


def _plain_clocked(model, processor, backbone, waves, questions, tokens, device):  # noqa: ANN001, ANN202
    """As `_clocked`, for an exported folder under plain `generate`: its own template and generation config."""
    clock = StepClock(device)
    start = time.perf_counter()
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "audio", "audio": "clip"}, {"type": "text", "text": q}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for q in questions
    ]
    inputs = {k: v.to(device) for k, v in backbone.encode(processor, texts, waves, padding_side="left").items()}
    model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, logits_processor=[clock])
    return clock.times[0] - start, statistics.median(np.diff(clock.times))


def bench_exports(
    coat_dir: Path,
    base_dir: Path,
    seconds: float = 10.0,
    batch_size: int = 1,
    max_new_tokens: int = 32,
    repeats: int = 5,
    device: str = "cpu",
) -> dict[str, Any]:
    """The same ratios for two folders written by `coat-pipe export` (a CoAT run and its baseline), each
    loaded with its backbone's own class and processor and run through plain `generate`."""
    import json

    from stages.export.folder import META_FILE
    from stages.train.backbones import BACKBONES

    target = torch.device(device)
    loaded = {}
    for name, folder in (("coat", coat_dir), ("base", base_dir)):
        backbone = BACKBONES[json.loads((Path(folder) / META_FILE).read_text())["backbone"]]
        model, processor = backbone.load(folder)
        loaded[name] = (model.to(target).eval(), processor, backbone)
    waves = [_clip(seconds, i) for i in range(batch_size)]
    questions = [QUESTION] * batch_size
    tokens = max(2, max_new_tokens)
    runs = {
        name: partial(_plain_clocked, model, processor, backbone, waves, questions, tokens, target)
        for name, (model, processor, backbone) in loaded.items()
    }
    with torch.inference_mode():
        return _coat_against_base(runs, repeats)
