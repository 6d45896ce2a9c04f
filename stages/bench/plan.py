"""`coat-pipe bench plan`: `train --plan`'s memory prediction against the peak two CPU ranks actually hold, with
and without gradient checkpointing, and the step time each costs.

The model is Qwen2-Audio's own class at a size where activations dominate on a CPU (an 8-layer, 512-wide
language model over 20 s clips, batch 4), saved with the tiny twin's processor and trained through
`coat-pipe train --model-path` under DeepSpeed (2 ranks, gloo), as a real run is. Each rank writes the
resident-memory high-water mark and what it held before the model was built (RUN/memory-rank*.json); the
difference is what the plan predicts (weights, gradients, optimizer states, activations). The plan's GPU
terms that a CPU run does not have (the CUDA context) are left out, and DeepSpeed's reduce buckets are set
small so that both sides count them alike. glibc keeps freed memory in its heap, so resident memory would
count every transient ever allocated; the ranks run with MALLOC_MMAP_THRESHOLD_=131072, which puts every
allocation above 128 kB in its own mapping, returned on free: the high-water mark is then the peak of live
bytes, as `torch.cuda.max_memory_allocated` reports it on a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from stages.progress import console

RATE = 16000
TURNS = [{"role": "user", "content": "Does the pitch rise or fall?"}, {"role": "assistant", "content": "rising"}]


def _corpus(root: Path, clips: int, seconds: float) -> Path:
    from stages.corpus.shard import build_shards, read_manifest
    from stages.extract.config import ExtractConfig
    from stages.extract.runner import run_extract

    audio = root / "clips"
    audio.mkdir(parents=True)
    rows = []
    t = np.arange(int(seconds * RATE)) / RATE
    for i in range(clips):
        sf.write(audio / f"c{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 10 * i + 20 * t) * t)).astype(np.float32), RATE)
        rows.append(json.dumps({"audio": f"clips/c{i}.wav", "messages": TURNS}))
    (root / "m.jsonl").write_text("\n".join(rows) + "\n")
    corpus = root / "corpus"
    entries, rejected = read_manifest(root / "m.jsonl")
    build_shards(entries, corpus, shard_size=clips, rejected=rejected, progress=False)
    run_extract(ExtractConfig(corpus=str(corpus), experts=["mel"], num_workers=0, progress=False))
    return corpus


def _model_folder(root: Path, hidden: int, layers: int) -> Path:
    """Qwen2-Audio's class with a language model of `hidden` × `layers`, and the tiny twin's processor."""
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2AudioForConditionalGeneration, Qwen2Config

    from stages.train.backbones import resolve_backbone
    from stages.train.backbones.tiny import TINY_AUDIO

    backbone, tiny = resolve_backbone("tiny-qwen2-audio")
    _, processor = backbone.load(tiny)
    text = Qwen2Config(
        vocab_size=len(processor.tokenizer) + 64,  # room for the block's tokens, as real checkpoints have
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(**TINY_AUDIO, max_source_positions=1500),
        text_config=text,
        audio_token_index=processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    torch.manual_seed(0)
    folder = root / "model"
    Qwen2AudioForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _text_tokens(folder: Path) -> int:
    """Tokens of one clip's conversation besides its audio and the block: template, question, answer."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(folder))
    chat = [{"role": "user", "content": [{"type": "text", "text": TURNS[0]["content"]}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    return len(processor.tokenizer(text + TURNS[1]["content"] + "<|im_end|>")["input_ids"]) + 2  # + audio bos/eos


def bench_plan(
    clips: int = 16, seconds: float = 20.0, batch_size: int = 4, steps: int = 4, hidden: int = 512, layers: int = 8
) -> dict[str, Any]:
    """Predicted and measured per-rank memory (and the median step time) with checkpointing off and on."""
    from stages.train.config import TrainConfig
    from stages.train.plan import OVERHEAD_BYTES, plan_training

    root = Path(tempfile.mkdtemp(prefix="coat-bench-plan-"))
    try:
        corpus, folder = _corpus(root, clips, seconds), _model_folder(root, hidden, layers)
        ds = json.loads((Path(__file__).resolve().parents[2] / "launch" / "ds_zero2.json").read_text())
        ds["zero_optimization"]["reduce_bucket_size"] = ds["zero_optimization"]["allgather_bucket_size"] = 1e6
        (root / "ds.json").write_text(json.dumps(ds))
        results = {}
        for checkpointing in (False, True):
            run = root / f"run-{checkpointing}"
            model = {"backbone": "qwen2-audio", "model_path": str(folder), "think_tokens": 32, "dtype": "float32",
                     "gradient_checkpointing": checkpointing}  # fmt: skip
            cfg = TrainConfig(corpus=str(corpus), out=run, experts=["mel"], batch_size=batch_size, steps=steps,
                              num_workers=0, ds_config=root / "ds.json", model=model)  # fmt: skip
            command = [
                str(Path(sys.executable).with_name("deepspeed")), "--num_gpus", "2", "--no_python",
                str(Path(sys.executable).with_name("coat-pipe")), "train", "--backbone", "qwen2-audio",
                "--model-path", str(folder), "--corpus", str(corpus), "--out", str(run), "--experts", "mel",
                "--think-tokens", "32", "--batch-size", str(batch_size), "--steps", str(steps), "--workers", "0",
                "--dtype", "float32", "--ds-config", str(root / "ds.json"),
                "--gradient-checkpointing" if checkpointing else "--no-gradient-checkpointing",
            ]  # fmt: skip
            env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="131072")
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f"bench plan: training failed\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            ranks = [json.loads(p.read_text()) for p in sorted(run.glob("memory-rank*.json"))]
            measured = max(r["peak_bytes"] - r["before_model_bytes"] for r in ranks)
            plan = plan_training(cfg, 2, 2**40, seconds, text_tokens=_text_tokens(folder))
            predicted = plan.total - OVERHEAD_BYTES
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            times = np.diff([0.0] + [r["elapsed_s"] for r in rows])
            results["on" if checkpointing else "off"] = {
                "predicted_bytes": predicted,
                "predicted": {k: v for k, v in plan.memory.items() if k != "overhead"},
                "measured_bytes": measured,
                "ratio": predicted / measured,
                "step_s": statistics.median(times[1:].tolist()),
                "tokens_per_clip": plan.tokens_per_clip,
            }
            console.print(
                f"checkpointing {'on' if checkpointing else 'off'}: {results['on' if checkpointing else 'off']}"
            )
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)
