"""BEATs (Chen et al., 2022, "BEATs: Audio Pre-Training with Acoustic Tokenizers"), written here in
plain torch and loadable from the official checkpoint files.

The input is a 128-band Kaldi fbank of the wave scaled by 2^15, normalised as (x - 15.41663) /
(2 × 6.55582). 16×16 patches over time × frequency are embedded by a convolution, then go through
LayerNorm and a projection to the encoder width. The encoder adds a convolutional positional
embedding, whose weight is weight-normalised over the kernel axis, and applies LayerNorm. Its
layers are post-LN Transformer layers with deep-norm residual scaling, α = (2L)^¼. They share one
bucketed relative position bias, computed in the first layer, and each layer gates that bias by
its queries. A fine-tuned checkpoint adds a linear predictor over the tokens.

Official checkpoints are `{"cfg": {...}, "model": state_dict}`. The module and parameter names here
follow those state-dict keys, so the file loads as it is; a key that does not match is refused,
and the error names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stages.extract.experts.kaldi_fbank import fbank

FBANK_MEAN, FBANK_STD = 15.41663, 6.55582
FBANK_BINS = 128


@dataclass
class BeatsConfig:
    """The checkpoint's `cfg` (unknown keys, e.g. dropouts, are ignored: inference only)."""

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    finetuned_model: bool = False
    predictor_class: int = 527

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> BeatsConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})


class WeightNormConv1d(nn.Module):
    """Conv1d whose weight is g · v / ‖v‖ with the norm over all axes but the kernel axis (dim 2)."""

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel) * 0.02)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.padding, self.groups = kernel // 2, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class TrimLast(nn.Module):
    """An even kernel with padding k/2 gives one output too many: drop the last."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.extra = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] - self.extra]


def relative_buckets(query_len: int, key_len: int, num_buckets: int, max_distance: int) -> torch.Tensor:
    """(Q, K) bucket of each relative position (key − query): exact near zero, log-spaced beyond, by sign."""
    relative = torch.arange(key_len)[None, :] - torch.arange(query_len)[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    exact = half // 2
    far = (
        exact
        + (torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact) * (half - exact)).long()
    )
    far = far.clamp(max=half - 1)
    return buckets + torch.where(distance < exact, distance, far)


class SelfAttention(nn.Module):
    def __init__(self, cfg: BeatsConfig, has_bias_table: bool) -> None:
        super().__init__()
        dim, self.heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.head_dim = dim // self.heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim) for _ in range(3))
        self.out_proj = nn.Linear(dim, dim)
        self.cfg = cfg
        if has_bias_table:
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, self.heads)
        if cfg.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.heads, 1, 1))

    def position_bias(self, length: int) -> torch.Tensor:
        buckets = relative_buckets(length, length, self.cfg.num_buckets, self.cfg.max_distance)
        return self.relative_attention_bias(buckets.to(self.relative_attention_bias.weight.device)).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (
            p(x).view(b, t, self.heads, self.head_dim).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        mask = torch.zeros(b, 1, 1, t, dtype=x.dtype, device=x.device)
        if padding is not None:
            mask = mask.masked_fill(padding[:, None, None, :], float("-inf"))
        if bias is not None:  # (H, T, T), gated per query in this layer
            if self.cfg.gru_rel_pos:
                gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, t, 2, 4).sum(-1))
                gate_a, gate_b = gates.chunk(2, dim=-1)
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias[None]
            mask = mask + bias.to(x.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: BeatsConfig, has_bias_table: bool) -> None:
        super().__init__()
        self.self_attn = SelfAttention(cfg, has_bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.encoder_embed_dim)
        self.fc1 = nn.Linear(cfg.encoder_embed_dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, cfg.encoder_embed_dim)
        self.final_layer_norm = nn.LayerNorm(cfg.encoder_embed_dim)
        self.alpha = math.pow(2 * cfg.encoder_layers, 0.25) if cfg.deep_norm else 1.0
        self.pre_norm = cfg.layer_norm_first

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.self_attn(self.self_attn_layer_norm(x), padding, bias)
            return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, padding, bias))
        return self.final_layer_norm(x * self.alpha + self.fc2(F.gelu(self.fc1(x))))


class Encoder(nn.Module):
    def __init__(self, cfg: BeatsConfig) -> None:
        super().__init__()
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(cfg.encoder_embed_dim, cfg.conv_pos, cfg.conv_pos_groups),
            TrimLast(cfg.conv_pos),
            nn.GELU(),
        )
        self.layer_norm = nn.LayerNorm(cfg.encoder_embed_dim)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg, has_bias_table=cfg.relative_position_embedding and i == 0)
            for i in range(cfg.encoder_layers)
        )
        if cfg.relative_position_embedding:  # one table, registered in every layer as the checkpoint has it
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias = self.layers[0].self_attn.relative_attention_bias
        self.cfg = cfg

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None, upto: int | None = None) -> torch.Tensor:
        if padding is not None:
            x = x.masked_fill(padding[..., None], 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.cfg.layer_norm_first:
            x = self.layer_norm(x)
        bias = self.layers[0].self_attn.position_bias(x.shape[1]) if self.cfg.relative_position_embedding else None
        for i, layer in enumerate(self.layers):
            x = layer(x, padding, bias)
            if upto is not None and i + 1 == upto:
                return x
        return self.layer_norm(x) if self.cfg.layer_norm_first else x


class Beats(nn.Module):
    def __init__(self, cfg: BeatsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        size = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=size, stride=size, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        if cfg.embed_dim != cfg.encoder_embed_dim:
            self.post_extract_proj = nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
        self.encoder = Encoder(cfg)
        if cfg.finetuned_model:
            self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)

    @staticmethod
    def features(wave: torch.Tensor) -> torch.Tensor:
        """(frames, 128) normalised fbank of one 16 kHz wave in [-1, 1]."""
        return (fbank(wave * 2**15, num_mel_bins=FBANK_BINS) - FBANK_MEAN) / (2 * FBANK_STD)

    def forward(self, feats: torch.Tensor, frames: torch.Tensor, upto: int | None = None):  # noqa: ANN201
        """feats (B, T, 128) zero-padded, frames (B,) valid fbank frames -> (B, P, 8, D) tokens by time
        patch and frequency patch, and (B, P) mask of the time patches that hold only real frames."""
        size = self.cfg.input_patch_size
        x = self.patch_embedding(feats.unsqueeze(1).to(self.patch_embedding.weight.dtype))  # (B, E, P, F)
        b, _, p, f = x.shape
        x = self.layer_norm(x.flatten(2).transpose(1, 2))  # (B, P·F, E): time-major, frequency inner
        if hasattr(self, "post_extract_proj"):
            x = self.post_extract_proj(x)
        valid = torch.arange(p, device=x.device)[None, :] < (frames.to(x.device) // size)[:, None]  # (B, P)
        padding = ~valid.repeat_interleave(f, dim=1)  # a patch with any padded frame counts as padding
        x = self.encoder(x, padding if bool(padding.any()) else None, upto)
        return x.view(b, p, f, -1), valid


def load_beats(path: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Beats, dict[str, Any]]:
    """A Beats model from an official checkpoint file (weights only: a pickle can run code)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "cfg" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"{path}: not a BEATs checkpoint (expected a dict with 'cfg' and 'model')")
    model = Beats(BeatsConfig.from_dict(checkpoint["cfg"]))
    expected, found = set(model.state_dict()), set(checkpoint["model"])
    if expected != found:
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        raise ValueError(
            f"{path}: its weights do not fit BEATs with its own cfg; missing {missing[:5]}"
            f"{' …' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}"
        )
    model.load_state_dict(checkpoint["model"])
    return model.to(device=device, dtype=dtype).eval(), checkpoint["cfg"]
