from pathlib import Path

import pytest
import torch

from stages.train.config import ModelConfig, TrainConfig
from stages.train.model import CoatModel


@pytest.mark.slow
def test_100_steps_on_tiny_qwen2_audio_lower_every_loss(specs, samples):
    """Single process, plain AdamW: the LM loss and each expert's loss fall."""
    torch.manual_seed(0)
    model = CoatModel.build(ModelConfig(backbone="tiny-qwen2-audio", think_tokens=8, head_width=64), specs)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    batches = [model.batch(samples[i : i + 4]) for i in range(0, 16, 4)]
    history = {"lm": [], "mel": [], "pitch": []}
    for step in range(100):
        out = model(batches[step % len(batches)])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        history["lm"].append(out.lm_loss.item())
        for e, v in out.expert_losses.items():
            history[e].append(v.item())
    for name, values in history.items():
        first, last = sum(values[:8]) / 8, sum(values[-8:]) / 8
        assert last < 0.8 * first, (name, first, last)


def test_a_baseline_has_no_align_stage():
    # `align` trains the distillation alone; a --no-think run has none, so its steps would train nothing
    tiny = {"backbone": "tiny-qwen2-audio"}
    coat = TrainConfig(corpus=Path("c"), out=Path("o"), steps=100, model=tiny)
    base = TrainConfig(corpus=Path("c"), out=Path("o"), steps=100, model=tiny | {"no_think": True})
    assert (coat.align_steps, base.align_steps) == (30, 0)
    assert TrainConfig(corpus=Path("c"), out=Path("o"), steps=100, schedule="joint", model=tiny).align_steps == 0
