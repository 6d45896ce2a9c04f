"""The distillation loss counts exactly the targets that exist: masks of clips, slots and pitch entries."""

import numpy as np
import torch
import torch.nn.functional as F

from stages.train.heads import expert_loss
from stages.train.targets import SlotTargets, TargetSpec
from store_schema.stats import ExpertStats


def _targets(kind: str, b: int = 3, k: int = 4, d: int = 2, seed: int = 0) -> SlotTargets:
    g = torch.Generator().manual_seed(seed)
    slots = torch.rand(b, k, d, generator=g) if kind == "pitch" else torch.randn(b, k, d, generator=g)
    clip = torch.rand(b, d, generator=g) if kind == "pitch" else torch.randn(b, d, generator=g)
    ones = torch.ones(b, k, d), torch.ones(b, d)
    return SlotTargets(slots, ones[0], clip, ones[1], torch.ones(b))


def _loss_and_grads(kind, pred_slots, pred_clip, targets):
    pred_slots, pred_clip = pred_slots.clone().requires_grad_(), pred_clip.clone().requires_grad_()
    loss = expert_loss(kind, pred_slots, pred_clip, targets)
    loss.backward()
    return loss.item(), pred_slots.grad, pred_clip.grad


def test_a_clip_without_targets_counts_for_nothing():
    for kind in ("spectrum", "pitch", "probs", "logits"):
        targets = _targets(kind)
        targets.valid[1] = 0
        pred_slots, pred_clip = torch.randn(3, 4, 2), torch.randn(3, 2)
        loss, grad_slots, grad_clip = _loss_and_grads(kind, pred_slots, pred_clip, targets)
        assert grad_slots[1].abs().max() == 0 and grad_clip[1].abs().max() == 0, kind
        assert grad_slots[0].abs().max() > 0, kind
        # whatever it predicts, or whatever garbage its targets hold, the loss does not move
        pred_slots[1], pred_clip[1] = 1e3, -1e3
        targets.slots[1], targets.clip[1] = 7.0, 7.0
        assert _loss_and_grads(kind, pred_slots, pred_clip, targets)[0] == loss, kind


def test_masked_slot_entries_are_neither_counted_nor_averaged_in():
    targets = _targets("spectrum")
    targets.slot_mask[0, 2:] = 0  # slots 2 and 3 of clip 0 undefined
    pred_slots, pred_clip = torch.randn(3, 4, 2), torch.randn(3, 2)
    loss, grad_slots, _ = _loss_and_grads("spectrum", pred_slots, pred_clip, targets)
    assert grad_slots[0, 2:].abs().max() == 0 and grad_slots[0, :2].abs().max() > 0
    pred_slots[0, 2:] = 100.0
    assert _loss_and_grads("spectrum", pred_slots, pred_clip, targets)[0] == loss
    # the slot part is the MSE over the defined entries only (plus 1 - cosine over defined rows)
    defined = targets.slot_mask.bool()
    mse = ((pred_slots - targets.slots) ** 2)[defined].mean()
    cosine = (1 - F.cosine_similarity(pred_slots, targets.slots, dim=-1))[defined.any(-1)].mean()
    clip_part = ((pred_clip - targets.clip) ** 2).mean() + (
        1 - F.cosine_similarity(pred_clip, targets.clip, dim=-1)
    ).mean()
    assert np.isclose(loss, 0.5 * (mse + cosine + clip_part).item(), rtol=1e-5)


def test_pitch_counts_cents_only_where_voiced_and_voicing_everywhere():
    targets = _targets("pitch", b=1, k=2)
    targets.slots[0, :, 0] = torch.tensor([0.5, -1.0])  # z-scored cents
    targets.slots[0, :, 1] = torch.tensor([0.9, 0.1])  # voicing probability
    targets.slot_mask[0, 1, 0] = 0  # slot 1 unvoiced: its cents are undefined
    targets.clip[0] = torch.tensor([0.2, 0.5])
    pred_slots = torch.tensor([[[1.0, 2.0], [50.0, -1.0]]])
    pred_clip = torch.tensor([[0.0, 0.0]])
    loss, grad_slots, _ = _loss_and_grads("pitch", pred_slots, pred_clip, targets)
    assert grad_slots[0, 1, 0] == 0  # the unvoiced slot's cents prediction (50) is free
    bce = F.binary_cross_entropy_with_logits
    slot_part = abs(1.0 - 0.5) + bce(torch.tensor([2.0, -1.0]), torch.tensor([0.9, 0.1])).item()
    clip_part = abs(0.0 - 0.2) + bce(torch.tensor([0.0]), torch.tensor([0.5])).item()
    assert np.isclose(loss, 0.5 * (slot_part + clip_part), rtol=1e-5)


def test_standardise_z_scores_pitch_cents_and_leaves_voicing_alone():
    record = {
        "expert": "pitch",
        "kind": "pitch",
        "dim": 2,
        "fingerprint": "f",
        "frames": {"mean": [100.0, 0.5], "std": [50.0, 0.25]},
        "clip": {"mean": [200.0, 0.3], "std": [10.0, 0.1]},
    }
    spec = TargetSpec.from_stats(ExpertStats.from_json(record))
    frames = np.array([[150.0, 0.8], [0.0, 0.1]])
    assert np.allclose(spec.standardise(frames), [[1.0, 0.8], [-2.0, 0.1]])
    assert np.allclose(spec.standardise(np.array([[210.0, 0.6]]), clip=True), [[1.0, 0.6]])
