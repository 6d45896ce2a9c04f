"""The oracle arm: its block receives each clip's true targets (in training, at test, after a reload), and no
other arm's input ever does."""

import dataclasses

import pytest
import torch

from stages.evaluate.run_eval import run_eval
from stages.train.bundle import load_bundle, save_bundle
from stages.train.config import ModelConfig
from stages.train.likelihood import choice_logprobs
from stages.train.model import CoatModel
from stages.train.oracle import corpus_targets, stack_targets
from stages.train.validate import one_clip
from store_schema.errors import UserError

K = 8

pytestmark = pytest.mark.slow  # three tiny models built and run (about 10 s): the fast lane stays under 2 minutes


def _model(specs, **kw) -> CoatModel:
    torch.manual_seed(0)
    return CoatModel.build(ModelConfig(backbone="tiny-qwen2-audio", think_tokens=K, head_width=64, **kw), specs)


def _swapped(targets):
    """The two clips' targets exchanged."""
    return {n: dataclasses.replace(t, **{f: v.flip(0) for f, v in vars(t).items()}) for n, t in targets.items()}


def _logits(model, batch, targets):
    model.eval()
    with torch.no_grad(), model.targets_given(targets):
        return model.model(**batch.inputs).logits


@pytest.fixture(scope="module")
def oracle(specs):
    model = _model(specs, oracle=True)
    with torch.no_grad():  # trained weights stand-in: the zero initialisation adds nothing yet
        for linear in model.oracle.maps.values():
            linear.weight.normal_(0, 0.5)
    return model


def test_the_oracle_answers_change_when_the_targets_are_permuted_across_clips(oracle, samples):
    batch = oracle.batch(samples[:2])
    own, swapped = _logits(oracle, batch, batch.targets), _logits(oracle, batch, _swapped(batch.targets))
    assert not torch.allclose(own, swapped, atol=1e-4)
    # one clip, its own targets or the other clip's: the likelihood of its answer changes too
    sample, choices = samples[0], ["low", "mid", "high"]
    with oracle.targets_given(one_clip(batch.targets, 0)):
        mine = choice_logprobs(oracle, sample.wave, sample.question, choices)
    with oracle.targets_given(one_clip(batch.targets, 1)):
        theirs = choice_logprobs(oracle, sample.wave, sample.question, choices)
    assert max(abs(a - b) for a, b in zip(mine, theirs)) > 1e-4


def test_the_oracle_refuses_a_block_without_targets(oracle, samples):
    batch = oracle.batch(samples[:1])
    with pytest.raises(RuntimeError, match="without its clips' targets"):
        oracle.model(**batch.inputs)


def test_the_oracle_maps_start_at_zero_and_learn_from_the_answer_loss(specs, samples):
    model = _model(specs, oracle=True, distill_weight=0.0)  # the LM loss alone must reach the maps
    assert all(float(p.abs().sum()) == 0 for p in model.oracle.parameters())
    model.train()
    model(model.batch(samples[:2])).loss.backward()
    assert all(float(linear.weight.grad.abs().sum()) > 0 for linear in model.oracle.maps.values())


@pytest.mark.parametrize("arm", [{}, {"distill_weight": 0.0}])  # CoAT and the block control
def test_no_other_arm_reads_the_targets(specs, samples, arm):
    model = _model(specs, **arm)
    with torch.no_grad():  # as after training: every trainable weight away from its initialisation
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
    batch = model.batch(samples[:2])
    assert torch.equal(_logits(model, batch, batch.targets), _logits(model, batch, _swapped(batch.targets)))
    model.eval()
    with torch.no_grad():
        own, swapped = model(batch), model(dataclasses.replace(batch, targets=_swapped(batch.targets)))
    assert torch.equal(own.logits, swapped.logits)  # the forward's loss differs, its answers do not


def test_an_oracle_bundle_reloads_its_maps_and_evaluates_with_the_store_targets(oracle, extracted_corpus, tmp_path):
    save_bundle(oracle, tmp_path / "run" / "final")
    reloaded = load_bundle(tmp_path / "run" / "final")
    for name, linear in oracle.oracle.maps.items():
        assert torch.equal(linear.weight, reloaded.oracle.maps[name].weight)
    keys = ["synth3_000000", "synth3_000001"]  # the extracted corpus is synth seed 3
    rows = corpus_targets(extracted_corpus, reloaded.specs, K, keys)
    batch = stack_targets([rows[k] for k in keys])
    assert batch["pitch"].slots.shape[:2] == (2, K)
    metrics, items = run_eval(tmp_path / "run", "synth", extracted_corpus, tmp_path / "eval", scoring="likelihood")
    left_out = [
        i for i in items if i.id not in corpus_targets(extracted_corpus, reloaded.specs, K, [i.id for i in items])
    ]
    assert metrics["n"] == len(items) and metrics["unanswered"] == len(left_out)
    assert all("no usable store targets" in i.problem for i in left_out)


def test_an_oracle_run_on_a_benchmark_without_a_store_is_refused(oracle, tmp_path):
    from stages.evaluate.run_eval import oracle_targets

    with pytest.raises(UserError, match="needs its clips' store targets"):
        oracle_targets(oracle, "mmau", tmp_path / "mmau.json", [])


def test_validation_gives_each_clip_its_own_targets(oracle, samples, monkeypatch):
    import stages.train.validate as validate

    seen = []

    def spy(model, wave, question, choices, system=None):
        seen.append(model.oracle.vectors.detach().clone())
        return choices[0], [0.0] * len(choices)

    monkeypatch.setattr(validate, "pick_choice", spy)
    chosen = [dataclasses.replace(s, choices=["low", "mid", "high"]) for s in samples[:3]]
    batch = oracle.batch(chosen)
    assert validate.likelihood_hits(oracle, chosen, batch.targets)[0] == 3
    with torch.no_grad():
        for row, vectors in enumerate(seen):
            assert torch.equal(vectors, oracle.oracle.embed(one_clip(batch.targets, row)))
        assert not torch.equal(seen[0], seen[1])


def test_an_oracle_run_is_not_exported_as_a_plain_model(oracle, tmp_path):
    from stages.export.folder import export_run

    save_bundle(oracle, tmp_path / "run" / "final")
    with pytest.raises(UserError, match="an oracle run"):
        export_run(tmp_path / "run", tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_thinking_token_k_of_each_clip_gets_that_clips_slot_k_vector(oracle, samples):
    batch = oracle.batch(samples[:2])
    ids = batch.inputs["input_ids"]
    embed = oracle.model.get_input_embeddings()
    blank = {n: dataclasses.replace(t, slots=t.slots * 0, slot_mask=t.slot_mask * 0) for n, t in batch.targets.items()}
    with torch.no_grad():
        with oracle.targets_given(batch.targets):
            given = embed(ids)
        with oracle.targets_given(blank):  # zero features: the maps add their bias only, zero here
            plain = embed(ids)
        vectors = oracle.oracle.embed(batch.targets)
    positions = oracle.think.slot_positions(ids)  # (B, K)
    expected = torch.zeros_like(given)
    for row in range(ids.shape[0]):
        expected[row, positions[row]] = vectors[row].to(given.dtype)
    assert torch.allclose(given - plain, expected, atol=1e-5)
