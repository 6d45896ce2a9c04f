"""The CoAT model on each tiny backbone: prompt layout, what trains, what the heads read, the bundle."""

import dataclasses

import numpy as np
import pytest
import torch

from stages.train.bundle import load_bundle, save_bundle
from stages.train.config import ModelConfig
from stages.train.model import CoatModel
from stages.train.think import THINK_END, THINK_START
from store_schema.errors import UserError
from tests.stages.train.conftest import TINY

K = 8


def _model(name: str, specs, **kw) -> CoatModel:
    torch.manual_seed(0)
    return CoatModel.build(ModelConfig(backbone=name, think_tokens=K, head_width=64, **kw), specs)


@pytest.fixture(scope="module", params=TINY)
def coat(request, specs):
    return _model(request.param, specs)


def test_forward_backward_trains_only_lora_block_rows_and_heads(coat, samples):
    out = coat(coat.batch(samples[:2]))
    assert torch.isfinite(out.lm_loss) and set(out.expert_losses) == {"mel", "pitch"}
    assert all(torch.isfinite(v) for v in out.expert_losses.values())
    out.loss.backward()
    trained = {n for n, p in coat.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    allowed = ("lora_A", "lora_B", "trainable_tokens", "heads.")
    assert trained and all(any(a in n for a in allowed) for n in trained), sorted(trained)[:5]
    assert any("trainable_tokens" in n for n in trained) and any("lora_" in n for n in trained)
    assert any(n.startswith("heads.mel") for n in trained) and any(n.startswith("heads.pitch") for n in trained)
    audio = coat.backbone.audio_encoder(coat.model.get_base_model())
    assert not any(p.requires_grad for p in audio.parameters())
    assert not any("audio_tower" in n and "lora" in n for n, _ in coat.named_parameters())
    coat.zero_grad()


def test_block_sits_once_at_the_assistant_turn_and_labels_cover_only_the_response(coat, samples):
    batch = coat.batch(samples[:2])
    tok = coat.processor.tokenizer
    for row in range(2):
        ids = batch.inputs["input_ids"][row][batch.inputs["attention_mask"][row].bool()].tolist()
        block = coat.think.all
        starts = [i for i in range(len(ids)) if ids[i : i + len(block)] == block]
        assert len(starts) == 1 and all(ids.count(t) == 1 for t in block)
        before = tok.decode(ids[: starts[0]])
        assert before.endswith("<|im_start|>assistant\n") and THINK_START not in before
        labelled = batch.labels[row][batch.labels[row] != -100].tolist()
        assert tok.decode(labelled) == samples[row].answer + coat.backbone.end_of_turn
        assert THINK_END not in tok.decode(labelled)


def test_audio_placeholders_are_the_processors_own(coat, samples):
    batch = coat.batch(samples[:2])
    texts = [coat.backbone.prompt(coat.processor, s.question) for s in samples[:2]]
    direct = coat.processor(
        text=texts,
        audio=[s.wave for s in samples[:2]],
        sampling_rate=16000,
        return_tensors="pt",
        text_kwargs={"padding": True},
    )
    audio_id = coat.processor.audio_token_id
    ours = (batch.inputs["input_ids"] == audio_id).sum(dim=1)
    assert ours.tolist() == (direct["input_ids"] == audio_id).sum(dim=1).tolist() and (ours > 0).all()
    # and the backbone's forward accepts them (it raises if placeholders and encoder frames disagree)
    with torch.no_grad():
        coat.model(**batch.inputs)


def _block_start(ids: list[int], start_id: int) -> int:
    """Where the block opens, found by reading the token list (not by the code under test)."""
    assert ids.count(start_id) == 1
    return ids.index(start_id)


def test_the_heads_read_the_block_tokens_in_order_at_their_layer(coat, samples):
    """What the heads receive is the chosen layer's hidden state at the K positions right after
    <|think_start|>, whose tokens are <|think_0|> … <|think_{K-1}|> in order."""
    batch = coat.batch(samples[:2])
    seen = []
    hooks = [h.proj_in.register_forward_pre_hook(lambda m, args: seen.append(args[0])) for h in coat.heads.values()]
    coat.eval()
    try:
        with torch.no_grad():
            coat(batch)
            hidden = coat.model(**batch.inputs, output_hidden_states=True).hidden_states
    finally:
        coat.train()
        for hook in hooks:
            hook.remove()
    assert coat.think_layer == round(2 * coat.backbone.num_layers(coat.model.get_base_model()) / 3)
    for row in range(2):
        ids = batch.inputs["input_ids"][row].tolist()
        first = _block_start(ids, coat.think.start) + 1
        expected = list(range(first, first + K))
        assert [ids[p] for p in expected] == list(coat.think.slots)
        assert ids[first + K] == coat.think.end
        for states in seen:  # one per head; every head reads the same states
            torch.testing.assert_close(states[row], hidden[coat.think_layer][row, expected])


def _heads_output(coat, batch, position: int | None) -> dict[str, torch.Tensor]:
    """The heads' slot and clip predictions, with the input embedding of row 0 at `position` moved."""
    embed = coat.model.get_base_model().get_input_embeddings()

    def perturb(module, args, output):
        output = output.clone()
        output[0, position] += 1.0
        return output

    handle = embed.register_forward_hook(perturb) if position is not None else None
    coat.eval()
    try:
        with torch.no_grad():
            out = coat(batch)
    finally:
        coat.train()
        if handle is not None:
            handle.remove()
    return {f"{e}.{part}": getattr(out, part)[e][0] for e in out.slots for part in ("slots", "clips")}


def test_the_heads_hear_every_thinking_position_and_not_the_block_end(coat, samples):
    """Moving the state at the last thinking position changes what the heads predict; moving the state
    of <|think_end|>, which comes after every thinking position, changes nothing. A head that read one
    position too early misses the first; one position too late, it hears the second."""
    batch = coat.batch(samples[:1])
    ids = batch.inputs["input_ids"][0].tolist()
    last = _block_start(ids, coat.think.start) + K
    assert ids[last] == coat.think.slots[-1] and ids[last + 1] == coat.think.end
    clean = _heads_output(coat, batch, None)
    at_last, at_end = _heads_output(coat, batch, last), _heads_output(coat, batch, last + 1)
    for name, value in clean.items():
        assert torch.equal(at_end[name], value), name
        assert not torch.allclose(at_last[name], value), name


def test_bundle_round_trip_is_exact(coat, samples, tmp_path):
    optimizer = torch.optim.AdamW([p for p in coat.parameters() if p.requires_grad], lr=1e-2)
    batch = coat.batch(samples[:2])
    for _ in range(2):  # move LoRA, the block rows and the heads away from their initial values
        coat(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    coat.eval()
    with torch.no_grad():
        before = coat(batch)
    reloaded = load_bundle(save_bundle(coat, tmp_path / "final"))
    with torch.no_grad():
        after = reloaded(reloaded.batch(samples[:2]))
    assert torch.equal(before.logits, after.logits)
    for e in ("mel", "pitch"):
        assert torch.equal(before.slots[e], after.slots[e]) and torch.equal(before.clips[e], after.clips[e])
    other = "af3" if coat.backbone.name != "af3" else "qwen2-audio"
    with pytest.raises(UserError, match=f"not {other}"):
        load_bundle(tmp_path / "final", backbone=other)
    coat.train()


def test_no_think_is_the_same_model_without_block_and_heads(specs, samples):
    think, plain = _model("tiny-qwen2-audio", specs), _model("tiny-qwen2-audio", specs, no_think=True)
    assert plain.think is None and len(plain.heads) == 0
    lora = lambda m: {n: p.shape for n, p in m.named_parameters() if "lora_" in n}  # noqa: E731
    assert lora(plain) == lora(think)
    batch = plain.batch(samples[:2])
    assert all(tok not in plain.processor.tokenizer.decode(batch.inputs["input_ids"][0]) for tok in (THINK_START,))
    out = plain(batch)
    assert out.expert_losses == {} and torch.equal(out.loss, out.lm_loss)


def test_a_clip_longer_than_the_backbone_allows_is_cut_with_a_warning_naming_it(specs, samples):
    model = _model("tiny-qwen2-audio", specs)
    long = dataclasses.replace(samples[0], key="long_clip", wave=np.tile(samples[0].wave, 40)[: 16000 * 31])
    with pytest.warns(UserWarning, match="long_clip: 31.0 s is longer than qwen2-audio's 30 s"):
        batch = model.batch([long])
    assert batch.inputs["feature_attention_mask"].sum() == 3000  # 30 s of 10 ms feature frames


@pytest.mark.parametrize("no_think", [False, True], ids=["coat", "baseline"])
def test_the_training_prompt_is_the_inference_prompt_plus_the_response(coat, samples, specs, no_think):
    """Training and inference build the prompt with one function (`stages/train/prompt.py`): token for
    token, what the model is trained on is what it is asked at evaluation, followed by the answer."""
    from stages.evaluate.answer import encode_prompts

    model = _model(coat.config.backbone, {}, no_think=True) if no_think else coat
    pair = samples[:2]  # two lengths: training pads on the right, inference on the left
    batch = model.batch(pair)
    asked = encode_prompts(model, [s.wave for s in pair], [s.question for s in pair])
    tokenizer = model.processor.tokenizer
    for row, sample in enumerate(pair):
        trained = batch.inputs["input_ids"][row][batch.inputs["attention_mask"][row].bool()].tolist()
        prompt = asked["input_ids"][row][asked["attention_mask"][row].bool()].tolist()
        response = tokenizer(sample.answer + model.backbone.end_of_turn, add_special_tokens=False)["input_ids"]
        assert trained == prompt + response
        for key in asked:
            if key.startswith("input_features") or key.endswith("values"):  # the audio features agree too
                assert torch.equal(asked[key][row], batch.inputs[key][row])


@pytest.mark.parametrize("backbone", TINY)
def test_the_arms_of_a_seed_start_from_the_same_trainable_weights(backbone, specs):
    """CoAT, the --no-think baseline and the --block-control arm, built as `run_train` builds them at one
    seed: the same LoRA; CoAT and the control also the same block rows and heads. (The twins' embedding
    resize for the block's tokens once drew from the seed's stream and shifted the baseline's LoRA.)"""
    from stages.train.backbones import resolve_backbone
    from stages.train.recipe import seed_all

    resolve_backbone(backbone, None)  # the twin is built (with its own seed) before the seed is set, as in run_train

    def trainable(**kw) -> dict[str, torch.Tensor]:
        seed_all(7)
        arm = CoatModel.build(
            ModelConfig(backbone=backbone, think_tokens=K, head_width=64, **kw), specs if not kw.get("no_think") else {}
        )
        return {n: p.detach().clone() for n, p in arm.named_parameters() if p.requires_grad}

    coat, base, control = trainable(), trainable(no_think=True), trainable(distill_weight=0.0)
    lora = sorted(n for n in coat if "lora_" in n)
    assert lora and lora == sorted(n for n in base if "lora_" in n)
    assert any(coat[n].abs().sum() > 0 for n in lora if "lora_A" in n)  # drawn, not all zero
    for name in lora:
        assert torch.equal(coat[name], base[name]), name
    assert coat.keys() == control.keys() and any(n.startswith("heads.") for n in coat)
    assert any("trainable_tokens" in n for n in coat)
    for name, value in coat.items():
        assert torch.equal(value, control[name]), name


def test_the_control_heads_log_their_losses_but_no_weight_learns_from_them(specs, samples):
    """--block-control (λ = 0): the heads' losses are computed for the log, and every gradient is the
    answer loss's alone, as if the model had no heads (the heads run without a graph)."""
    control = _model("tiny-qwen2-audio", specs, distill_weight=0.0)
    batch = control.batch(samples[:2])
    torch.manual_seed(1)  # the same dropout masks in both passes
    out = control(batch)
    assert set(out.expert_losses) == {"mel", "pitch"} and all(torch.isfinite(v) for v in out.expert_losses.values())
    out.loss.backward()
    assert all(p.grad is None for p in control.heads.parameters())
    with_heads = {n: p.grad.clone() for n, p in control.named_parameters() if p.grad is not None}
    control.zero_grad(set_to_none=True)
    heads, control.heads = control.heads, torch.nn.ModuleDict()  # the same model, no heads at all
    torch.manual_seed(1)
    control(batch).loss.backward()
    control.heads = heads
    without = {n: p.grad for n, p in control.named_parameters() if p.grad is not None}
    assert with_heads.keys() == without.keys() and any("trainable_tokens" in n for n in without)
    for name, grad in without.items():
        assert torch.equal(with_heads[name], grad), name
