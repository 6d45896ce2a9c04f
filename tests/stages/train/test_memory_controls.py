"""The controls of a real run: gradient checkpointing (the same loss and gradients), the attention
implementation, precision, and what trains (projector, audio encoder by LoRA or in full, the whole LM)."""

import json

import pytest
import torch

from stages.train.backbones import resolve_backbone
from stages.train.bundle import load_bundle, save_bundle
from stages.train.config import ModelConfig, resolved_dtype
from stages.train.model import CoatModel
from store_schema.errors import UserError
from tests.helpers import cli
from tests.stages.train.conftest import TINY


def _build(backbone: str, specs, **kw) -> CoatModel:
    resolve_backbone(backbone)  # a twin built now would draw from the seed's stream (as run_train avoids too)
    torch.manual_seed(0)
    return CoatModel.build(ModelConfig(backbone=backbone, think_tokens=4, head_width=32, **kw), specs)


@pytest.mark.parametrize("backbone", TINY)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(backbone, specs, samples):
    plain = _build(backbone, specs)
    ckpt = _build(backbone, specs, gradient_checkpointing=True)
    assert (
        ckpt.model.get_base_model().is_gradient_checkpointing
        and not plain.model.get_base_model().is_gradient_checkpointing
    )
    batch = plain.batch(samples[:2])
    grads = []
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(5)  # the same LoRA dropout masks; the recompute replays them (the RNG state is kept)
        out = model(batch)
        out.loss.backward()
        grads.append(
            (out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    (loss_a, grad_a), (loss_b, grad_b) = grads
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    assert grad_a.keys() == grad_b.keys() and len(grad_a) > 10
    for name in grad_a:
        torch.testing.assert_close(grad_a[name], grad_b[name], rtol=1e-4, atol=1e-6, msg=name)


def test_checkpointing_defaults_on_for_real_backbones_and_off_for_twins():
    assert ModelConfig(backbone="qwen2-audio").checkpointing and not ModelConfig(backbone="tiny-af3").checkpointing
    assert not ModelConfig(backbone="af3", gradient_checkpointing=False).checkpointing


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_each_attention_implementation_loads_and_gives_the_same_loss(attn, specs, samples):
    model = _build("tiny-qwen2-audio", specs, attn_implementation=attn).eval()
    reference = _build("tiny-qwen2-audio", specs).eval()
    assert model.model.get_base_model().config._attn_implementation == attn
    with torch.no_grad():
        batch = model.batch(samples[:2])
        torch.testing.assert_close(model(batch).loss, reference(batch).loss, rtol=1e-4, atol=1e-5)


def test_flash_attention_without_its_package_is_one_clear_error(specs):
    with pytest.raises(UserError, match="flash-attn package"):
        _build("tiny-qwen2-audio", specs, attn_implementation="flash_attention_2")


def test_auto_precision_is_float32_on_this_cpu():
    assert resolved_dtype("auto") == "float32" and resolved_dtype("bfloat16") == "bfloat16"


def _trainable(model: CoatModel) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_what_trains_follows_the_settings(specs):
    default = _trainable(_build("tiny-qwen2-audio", specs))
    assert not any("audio_tower" in n or "multi_modal_projector" in n for n in default)
    projector = _trainable(_build("tiny-qwen2-audio", specs, train_projector=True))
    assert any("multi_modal_projector" in n for n in projector - default)
    audio_lora = _trainable(_build("tiny-qwen2-audio", specs, train_audio_encoder="lora"))
    assert {n for n in audio_lora - default} and all("audio_tower" in n and "lora_" in n for n in audio_lora - default)
    audio_full = _trainable(_build("tiny-qwen2-audio", specs, train_audio_encoder="full"))
    assert any("audio_tower" in n and "lora_" not in n for n in audio_full)
    full = _build("tiny-qwen2-audio", specs, lora_rank=0)
    names = _trainable(full)
    assert not any("lora_" in n for n in names) and any("language_model.layers.0.mlp" in n for n in names)
    assert not any("audio_tower" in n for n in names)
    with pytest.raises(ValueError, match="lora needs lora_rank > 0"):
        ModelConfig(backbone="tiny-af3", lora_rank=0, train_audio_encoder="lora")


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param("model.train_projector=true", marks=pytest.mark.slow),
        pytest.param("model.train_audio_encoder=lora", marks=pytest.mark.slow),
        pytest.param("model.train_audio_encoder=full", marks=pytest.mark.slow),
        "model.lora_rank=0",  # the fast lane keeps the one with its own bundle and export path
    ],
)
def test_each_training_choice_trains_under_zero2_and_reloads(setting, extracted_corpus, tmp_path, samples):
    """Two steps under DeepSpeed ZeRO-2 (one rank), a checkpoint without the frozen base, and a bundle that
    reloads to the trained weights."""
    run = tmp_path / "run"
    cli("train", "--backbone", "tiny-qwen2-audio", "--corpus", extracted_corpus, "--out", run, "--steps", 2,
        "--think-tokens", 4, "--batch-size", 2, "--workers", 0, "--set", setting, "--lr", "1e-2")  # fmt: skip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    bundle = run / "final"
    assert (bundle / ("model" if setting.endswith("lora_rank=0") else "adapter")).is_dir()
    reloaded = load_bundle(bundle)
    again = load_bundle(save_bundle(reloaded, tmp_path / "again"))
    with torch.no_grad():
        batch = reloaded.batch(samples[:2])
        torch.testing.assert_close(reloaded(batch).logits, again(batch).logits)
    if setting.endswith("lora_rank=0"):
        error = cli("export", "--run", run, "--out", tmp_path / "adapter", "--adapter-only", expect=2)
        assert "full fine-tune" in error.output
        cli("export", "--run", run, "--out", tmp_path / "merged")
        assert (tmp_path / "merged" / "model.safetensors").is_file()


def test_training_runs_the_decoder_in_training_mode_and_a_frozen_encoder_in_eval_mode(
    extracted_corpus, tmp_path, monkeypatch
):
    """transformers hands models over in eval mode; `train` switches what trains to training mode (where
    gradient checkpointing and dropout apply) and keeps the frozen audio encoder a fixed feature extractor."""
    seen = []
    forward = CoatModel.forward

    def recording(self, batch, lm_weight=1.0):
        base = self.model.get_base_model()
        seen.append((self.backbone.language_model(base).training, self.backbone.audio_encoder(base).training))
        return forward(self, batch, lm_weight)

    monkeypatch.setattr(CoatModel, "forward", recording)
    cli("train", "--backbone", "tiny-qwen2-audio", "--corpus", extracted_corpus, "--out", tmp_path / "run",
        "--steps", 1, "--think-tokens", 2, "--batch-size", 2, "--workers", 0)  # fmt: skip
    assert seen == [(True, False)]
    full = _build("tiny-qwen2-audio", {}, no_think=True, train_audio_encoder="full").train()
    assert full.backbone.audio_encoder(full.model.get_base_model()).training
