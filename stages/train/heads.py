"""Per-expert heads over the thinking states, and the distillation loss of each kind of target."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stages.train.targets import SlotTargets
from store_schema.layout import VOICING_COLUMN, voiced_columns


class ExpertHead(nn.Module):
    """A small Transformer over the K thinking states: (B, K, H) -> slots (B, K, D) and clip (B, D).

    A learned clip token is prepended; slot positions are learned. Training only: dropped at inference.
    """

    def __init__(self, hidden: int, dim: int, k: int, width: int = 256, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.proj_in = nn.Linear(hidden, width)
        self.position = nn.Parameter(torch.randn(1, k + 1, width) * 0.02)
        self.clip_token = nn.Parameter(torch.zeros(1, 1, width))
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.slot_out = nn.Linear(width, dim)
        self.clip_out = nn.Linear(width, dim)

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.proj_in(states)  # (B, K, W)
        x = torch.cat([self.clip_token.expand(len(x), -1, -1), x], dim=1) + self.position  # (B, K+1, W)
        x = self.norm(self.encoder(x))
        return self.slot_out(x[:, 1:]), self.clip_out(x[:, 0])  # (B, K, D), (B, D)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def _regression(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE on z-scores plus (1 - cosine) over the feature axis: scale and direction both count."""
    mse = _masked_mean((pred - target) ** 2, mask)
    row = mask.amax(dim=-1)
    cosine = 1 - F.cosine_similarity(pred * mask, target * mask, dim=-1, eps=1e-6)
    return mse + _masked_mean(cosine, row)


def _kl(pred_logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(pred)) for class-probability targets."""
    target = target.clamp(min=1e-8)
    kl = (target * (target.log() - F.log_softmax(pred_logits, dim=-1))).sum(dim=-1)
    return _masked_mean(kl, mask.amax(dim=-1))


def _bce(pred_logits: torch.Tensor, target_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(pred_logits, target_probs.clamp(0, 1), reduction="none")
    return _masked_mean(loss, mask)


def _part(kind: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if kind in ("embedding", "spectrum"):
        return _regression(pred, target, mask)
    if kind == "probs":
        return _kl(pred, target, mask)
    if kind == "logits":  # multi-label: the expert's logits become per-label probabilities
        return _bce(pred, torch.sigmoid(target), mask)
    if kind == "pitch":  # masked L1 on z-scored cents (and the pitch class, where given) + voicing BCE
        columns = voiced_columns(pred.shape[-1])
        return _masked_mean((pred[..., columns] - target[..., columns]).abs(), mask[..., columns]) + _bce(
            pred[..., VOICING_COLUMN], target[..., VOICING_COLUMN], mask[..., VOICING_COLUMN]
        )
    raise ValueError(f"unknown target kind {kind!r}")


def expert_loss(kind: str, slots: torch.Tensor, clip: torch.Tensor, targets: SlotTargets) -> torch.Tensor:
    """Mean of the slot loss and the clip loss; clips without targets (valid 0) count for nothing."""
    valid = targets.valid
    slot_mask = targets.slot_mask * valid[:, None, None]
    clip_mask = targets.clip_mask * valid[:, None]
    return 0.5 * (_part(kind, slots, targets.slots, slot_mask) + _part(kind, clip, targets.clip, clip_mask))
