"""Validation while training: held-out corpora scored every `eval_every` steps and at the end.

Every rank scores its share of each validation corpus (clip p goes to rank p mod world, in tar order) and
the sums are all-reduced, so the figures do not depend on the number of ranks. Per corpus NAME:

  val/NAME/lm        the mean over clips of each clip's LM loss (the mean over its answer tokens)
  val/NAME/<expert>  the mean over the clips that hold the expert's targets of its distillation loss
  val/NAME/loss      lm + λ Σ_e w_e <expert>, the training objective's joint form
  val/NAME/accuracy  where clips list their allowed answers ("choices" in the sample's json, as the synth
                     corpus and MMAU-style sets do): the share whose most likely answer (likelihood
                     scoring, stages/train/likelihood.py) is the reference
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from stages.train.data import PlannedBatches, batch_loader, iterate_batches
from stages.train.heads import expert_loss
from stages.train.likelihood import pick_choice
from stages.train.model import CoatModel
from stages.train.stream import Source
from stages.train.targets import SlotTargets


def clip_lm_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) each row's mean next-token loss over its labelled tokens."""
    shifted, targets = logits[:, :-1].float(), labels[:, 1:]
    losses = F.cross_entropy(shifted.transpose(1, 2), targets, ignore_index=-100, reduction="none")  # (B, L-1)
    counts = (targets != -100).sum(dim=1).clamp(min=1)
    return losses.sum(dim=1) / counts


@torch.no_grad()
def validate(
    model: CoatModel, sets: list[Source], rank: int, world: int, batch_size: int, device: torch.device
) -> dict[str, float]:
    """The validation metrics of every set, the same on every rank."""
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    experts = list(model.heads)
    for source in sets:
        items = [(0, s, i) for s in range(len(source.usable)) for i in source.usable[s]][rank::world]
        batches = [items[j : j + batch_size] for j in range(0, len(items), batch_size)]
        dataset = PlannedBatches([(str(source.corpus.root), source.experts)], batches)
        # [clips, Σ lm, scored, correct, then Σ loss and clips per expert]
        sums = torch.zeros(4 + 2 * len(experts), dtype=torch.float64)
        for samples in iterate_batches(batch_loader(dataset, 0, 0)):
            batch = model.batch(samples)
            out = model(batch)
            sums[0] += len(samples)
            sums[1] += clip_lm_losses(out.logits, batch.labels.to(out.logits.device)).double().sum().cpu()
            for e, name in enumerate(experts):
                targets = batch.targets[name].to(device)
                for row in range(len(samples)):
                    if targets.valid[row] > 0:
                        one = type(targets)(*(t[row : row + 1] for t in vars(targets).values()))
                        loss = expert_loss(model.specs[name].kind, out.slots[name][row : row + 1],
                                           out.clips[name][row : row + 1], one)  # fmt: skip
                        sums[4 + 2 * e] += float(loss)
                        sums[5 + 2 * e] += 1
            scored, correct = likelihood_hits(model, samples, batch.targets)
            sums[2] += scored
            sums[3] += correct
        if dist.is_initialized() and world > 1:
            reduced = sums.to(device)
            dist.all_reduce(reduced)
            sums = reduced.cpu()
        prefix = f"val/{source.name}/"
        lm = float(sums[1] / sums[0]) if sums[0] else float("nan")
        metrics[prefix + "lm"] = lm
        total = lm
        for e, name in enumerate(experts):
            if sums[5 + 2 * e] > 0:
                value = float(sums[4 + 2 * e] / sums[5 + 2 * e])
                metrics[prefix + name] = value
                total += model.config.distill_weight * model.config.expert_weights.get(name, 1.0) * value
        metrics[prefix + "loss"] = total
        if sums[2] > 0:
            metrics[prefix + "accuracy"] = float(sums[3] / sums[2])
    model.train(was_training)
    return metrics


def likelihood_hits(model: CoatModel, samples: list, targets: dict[str, SlotTargets]) -> tuple[int, int]:
    """(scored, correct) over the samples that list their allowed answers: the most likely one against the
    reference, each clip with its own targets at the block (what the oracle reads; nothing for other arms)."""
    scored = correct = 0
    for row, sample in enumerate(samples):
        if sample.choices:
            with model.targets_given(one_clip(targets, row)):
                picked, _ = pick_choice(model, sample.wave, sample.question, sample.choices)
            scored, correct = scored + 1, correct + int(picked == sample.answer)
    return scored, correct


def one_clip(targets: dict[str, SlotTargets], row: int) -> dict[str, SlotTargets]:
    """The targets of one row of a batch."""
    return {name: type(t)(*(v[row : row + 1] for v in vars(t).values())) for name, t in targets.items()}


def best_key(metric: str, sets: list[Source]) -> str:
    """The metrics key that decides the best checkpoint: `loss` stands for the first set's joint loss."""
    return f"val/{sets[0].name}/loss" if metric == "loss" else metric


def improved(metric: str, value: float, best: float | None) -> bool:
    """Accuracies improve upward, losses downward."""
    if best is None:
        return True
    return value > best if metric.endswith("accuracy") else value < best


def summary(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k.removeprefix('val/')} {v:.3f}" for k, v in metrics.items())
