"""`coat-pipe bench train-7b`: a real-size, randomly initialised Qwen2-Audio-7B under ZeRO-2 with LoRA, K=32,
two 30 s clips: step time and peak GPU memory of CoAT and of the --no-think baseline.

Run each variant in its own process (`--variant coat`, then `--variant baseline`): DeepSpeed keeps some
of the first engine's memory for the life of the process, which would inflate the second peak.
"""

from __future__ import annotations

import gc
import statistics
import time
from pathlib import Path
from typing import Any

import deepspeed
import numpy as np
import torch
from peft import get_peft_model
from transformers import Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2AudioForConditionalGeneration, Qwen2Config

from stages.train.backbones import resolve_backbone
from stages.train.batch import CoatSample
from stages.train.config import ModelConfig, TrainConfig
from stages.train.model import CoatModel, lora_config
from stages.train.recipe import deepspeed_config, init_distributed
from stages.train.targets import TargetSpec
from stages.train.think import add_thinking_tokens

CLIP_SECONDS = 30.0


def qwen2_audio_7b_config(audio_token_id: int, toy: bool = False) -> Qwen2AudioConfig:
    """Qwen2-Audio-7B's sizes from its public config: Whisper-large-v3's encoder (the encoder config's
    defaults) and a 32-layer, 4096-wide Qwen-7B with a 156032-row vocabulary. `toy` shrinks it for a CPU check."""
    audio = {"encoder_layers": 1, "d_model": 64, "encoder_attention_heads": 2, "encoder_ffn_dim": 64} if toy else {}
    text = dict(
        vocab_size=156032,
        hidden_size=64 if toy else 4096,
        intermediate_size=11008,
        num_hidden_layers=2 if toy else 32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=8192,
    )
    return Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(**audio), text_config=Qwen2Config(**text), audio_token_index=audio_token_id
    )


def _samples(rng: np.random.Generator, n: int = 2) -> list[CoatSample]:
    t = int(CLIP_SECONDS * 12.5)
    return [
        CoatSample(
            f"clip{i}",
            (0.1 * rng.standard_normal(int(CLIP_SECONDS * 16000))).astype(np.float32),
            "Describe the audio.",
            "A low hum.",
            {
                "mel": rng.standard_normal((t, 128)).astype(np.float16),
                "pitch": np.stack([rng.uniform(5000, 7000, t), rng.uniform(0, 1, t)], 1),
            },
            {"mel": rng.standard_normal(128), "pitch": np.array([6000.0, 0.5])},
        )
        for i in range(n)
    ]


def bench_real_size(no_think: bool, steps: int = 6, toy: bool = False) -> dict[str, Any]:
    """Median step time (after two warm-up steps) and peak GPU memory of one variant."""
    on_gpu = not toy
    device = "cuda" if on_gpu else "cpu"
    init_distributed()
    backbone, tiny = resolve_backbone("tiny-qwen2-audio")
    _, processor = backbone.load(tiny)  # a small tokenizer; the real 128-bin front end and chat template
    specs = {
        "mel": TargetSpec("mel", "spectrum", 128, "-", np.zeros(128), np.ones(128), np.zeros(128), np.ones(128)),
        "pitch": TargetSpec(
            "pitch",
            "pitch",
            2,
            "-",
            np.array([6000.0, 0]),
            np.array([900.0, 1]),
            np.array([6000.0, 0]),
            np.array([900.0, 1]),
        ),
    }
    torch.manual_seed(0)
    config = ModelConfig(backbone="qwen2-audio", think_tokens=32, no_think=no_think, dtype="bfloat16")
    with torch.device(device):
        model = Qwen2AudioForConditionalGeneration._from_config(
            qwen2_audio_7b_config(processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>"), toy),
            dtype=torch.bfloat16 if on_gpu else torch.float32,
        )
    think = None if no_think else add_thinking_tokens(processor.tokenizer, config.think_tokens)
    coat = CoatModel(
        config,
        backbone,
        "random-init",
        get_peft_model(model, lora_config(config, model, backbone, think)),
        processor,
        think,
        {} if no_think else specs,
    ).to(device)
    ds = deepspeed_config(TrainConfig(corpus=".", out=Path("."), batch_size=2, model=config), on_gpu)
    ds["optimizer"]["params"]["torch_adam"] = True  # no JIT build of FusedAdam for a short benchmark
    engine, *_ = deepspeed.initialize(
        model=coat, model_parameters=[p for p in coat.parameters() if p.requires_grad], config=ds
    )
    batch = coat.batch(_samples(np.random.default_rng(0)))
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 2):
        sync()
        start = time.perf_counter()
        out = engine(batch)
        engine.backward(out.loss)
        engine.step()
        sync()
        times.append(time.perf_counter() - start)
    result = {
        "variant": "baseline" if no_think else "coat",
        "step_s": statistics.median(times[2:]),
        "steps_s": times[2:],
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else 0.0,
        "tokens": int(batch.inputs["attention_mask"].sum()),
        "params_b": sum(p.numel() for p in coat.parameters()) / 1e9,
    }
    del engine, coat, model, out, batch
    gc.collect()
    return result
