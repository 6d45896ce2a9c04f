"""L = L_lm + λ Σ_e w_e L_e, pinned with λ and w_e other than 0 and 1, against the formula computed here
from the separately returned terms: the loss, its gradients, and the `align` stage (L_lm weighted 0)."""

import pytest
import torch

from stages.train.config import ModelConfig
from stages.train.model import CoatModel

LAMBDA, WEIGHTS = 0.5, {"mel": 2.0, "pitch": 0.25}


def by_hand(lm: torch.Tensor, experts: dict[str, torch.Tensor], lm_weight: float = 1.0) -> torch.Tensor:
    """The formula, written out with this test's own constants (not the config's)."""
    return lm_weight * lm + LAMBDA * (WEIGHTS["mel"] * experts["mel"] + WEIGHTS["pitch"] * experts["pitch"])


@pytest.fixture(scope="module")
def model(specs):
    torch.manual_seed(0)
    config = ModelConfig(
        backbone="tiny-qwen2-audio",
        think_tokens=4,
        head_width=32,
        lora_dropout=0.0,  # one graph, two backward passes: no dropout masks to differ between them
        distill_weight=LAMBDA,
        expert_weights=WEIGHTS,
    )
    return CoatModel.build(config, specs)


@pytest.mark.parametrize("lm_weight", [1.0, 0.0], ids=["joint", "align"])
def test_the_loss_and_its_gradients_are_the_formulas(model, samples, lm_weight):
    out = model(model.batch(samples[:2]), lm_weight=lm_weight)
    expected = by_hand(out.lm_loss, out.expert_losses, lm_weight)
    # every term is there and not trivially zero, so a dropped or swapped weight shows in the sum
    assert set(out.expert_losses) == {"mel", "pitch"} and all(v.item() > 0.01 for v in out.expert_losses.values())
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=0)
    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(out.loss, params, retain_graph=True, allow_unused=True)
    want = torch.autograd.grad(expected, params, allow_unused=True)
    compared = 0
    for g, w in zip(got, want):
        if g is None or w is None:
            assert g is None and w is None
            continue
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-8)
        compared += 1
    assert compared > 10


def test_align_gradients_carry_no_answer_loss(model, samples):
    """In `align` the LM loss is computed (and logged) but weighs 0: the LoRA gradient is that of the
    weighted distillation alone, and differs from the joint stage's."""
    batch = model.batch(samples[:2])
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    align = model(batch, lm_weight=0.0)
    distill_only = LAMBDA * (
        WEIGHTS["mel"] * align.expert_losses["mel"] + WEIGHTS["pitch"] * align.expert_losses["pitch"]
    )
    grads = [
        torch.autograd.grad(loss, lora, retain_graph=True, allow_unused=True) for loss in (align.loss, distill_only)
    ]
    joint = torch.autograd.grad(align.lm_loss + distill_only, lora, allow_unused=True)
    used = [i for i, g in enumerate(grads[1]) if g is not None]  # LoRA of layers above the heads' layer get none
    unused = [grads[0][i] for i in range(len(lora)) if i not in used]
    assert used and unused and all(g is None or not g.any() for g in unused)  # the answer loss moves none of them
    for i in used:
        torch.testing.assert_close(grads[0][i], grads[1][i], rtol=1e-5, atol=1e-8)
    assert any(not torch.allclose(grads[0][i], joint[i]) for i in used)


def test_logged_rows_follow_the_formula_in_both_stages(composed_run):
    """What `train` writes to metrics.jsonl: the total equals the formula on the logged terms, with L_lm
    left out in the `align` rows (the first 30 % of steps) and counted in the `joint` rows."""
    rows = composed_run.metrics
    assert [r["stage"] for r in rows] == ["align"] * 4 + ["joint"] * 8  # round(0.3 × 12) align steps
    for row in rows:
        lm_weight = 0.0 if row["stage"] == "align" else 1.0
        terms = {e: torch.tensor(row[e], dtype=torch.float64) for e in ("mel", "pitch")}
        expected = by_hand(torch.tensor(row["lm"], dtype=torch.float64), terms, lm_weight)
        assert row["loss"] == pytest.approx(float(expected), rel=1e-5), row
