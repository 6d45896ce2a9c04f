"""Seeds as the unit of replication: a comparison of two arms trained on the same seeds is tested across the
seeds, not across items pooled over seeds.

Pooling items over seeds (McNemar on every seed's items at once) treats the trained models as fixed and
counts each item once per seed; when models differ from seed to seed it rejects a true null far more often
than its level. Here each seed gives one paired difference d_s = acc_B(s) − acc_A(s) over the same items,
and the test asks whether the d_s are centred on 0:
- `sign_flip_p`: the exact two-sided sign-flip (permutation) test. Under the null each d_s is as likely
  positive as negative, so every one of the 2**n sign patterns is equally likely; p is the share of patterns
  whose mean is at least as far from 0 as the observed one. No normality assumed; with n seeds the smallest
  p is 2 / 2**n (3 seeds: 0.25, 6 seeds: 0.031), which is why a design that wants p < 0.05 needs ≥ 6.
- `holm`: Holm's step-down adjustment for a family of p values (per-type claims).
- `minimum_detectable_effect`: the |Δ| the design finds with 80 % power at a two-sided 5 % level, from its
  variance components: between seeds (τ²) and within a seed's items (v / items).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z_975, Z_80 = 1.959963984540054, 0.8416212335729143


def seed_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per seed, mean(b) − mean(a) over the items: (seeds, items) 0/1 arrays paired on both axes."""
    return b.astype(np.float64).mean(axis=1) - a.astype(np.float64).mean(axis=1)


def sign_flip_p(differences: Sequence[float]) -> float:
    """Exact two-sided sign-flip test that the per-seed differences are centred on 0."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no seeds to test")
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    means = np.abs(signs @ d) / d.size
    return float(np.mean(means >= observed - 1e-12))  # the observed pattern is one of them: p ≥ 1 / 2**n


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p values, in the order given: the k-th smallest times (m − k + 1), kept monotone, ≤ 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class VarianceComponents:
    """Of the paired difference B − A: `between_seeds` (τ², of the seed's true difference) and `within_items`
    (v, the variance of one item's difference b_i − a_i within a seed)."""

    between_seeds: float
    within_items: float

    @classmethod
    def observed(cls, a: np.ndarray, b: np.ndarray) -> VarianceComponents:
        """Estimated from a (seeds, items) run of the design: v from the items, τ² from the seeds' spread
        less what the items alone explain (method of moments, floored at 0)."""
        diff = b.astype(np.float64) - a.astype(np.float64)
        seeds, items = diff.shape
        within = float(diff.var(axis=1, ddof=1).mean()) if items > 1 else 0.0
        spread = float(diff.mean(axis=1).var(ddof=1)) if seeds > 1 else 0.0
        return cls(max(0.0, spread - within / items), within)

    def standard_error(self, seeds: int, items: int) -> float:
        """Of the mean over seeds of the per-seed differences."""
        return math.sqrt((self.between_seeds + self.within_items / items) / seeds)


def minimum_detectable_effect(components: VarianceComponents, seeds: int, items: int) -> float:
    """|Δ| found with 80 % power by a two-sided 5 % test on the seeds' mean difference (normal approximation;
    the exact sign-flip test needs at least 6 seeds to reach 5 % at all)."""
    return (Z_975 + Z_80) * components.standard_error(seeds, items)
