"""The `pitch-class` expert (the fifth registration's pitch-class target): sine and cosine of the pitch class,
defined on voiced frames only, carried as such through pooling, slots, stats and the loss."""

import numpy as np
import pytest
import torch

from stages.extract.experts import load_expert
from stages.extract.experts.pitch import pitch_class
from stages.extract.pooling import pool_clip, pool_to_store_rate
from stages.train.heads import expert_loss
from stages.train.targets import SlotTargets, TargetSpec, make_targets, pool_to_slots
from store_schema.stats import RunningStats, stats_mask


def _tone(hz: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _angle(sin_cos: np.ndarray) -> np.ndarray:
    """The pitch class in cents (0-1200) from its sine and cosine."""
    return np.mod(np.degrees(np.arctan2(sin_cos[..., 0], sin_cos[..., 1])) / 360 * 1200, 1200)


def test_the_pitch_class_is_the_note_whatever_the_octave():
    expert = load_expert("pitch-class")
    low, high, fifth = (expert([_tone(hz)])[0] for hz in (440.0, 880.0, 660.0))
    assert low.shape[1] == 4
    np.testing.assert_array_equal(low[:, :2], load_expert("pitch")([_tone(440.0)])[0])  # pitch's own columns
    voiced = low[:, 1] >= 0.5
    # A above 10 Hz: 1200 log2(44) = 6551.3 cents, 551.3 within the octave; the octave above is the same class
    assert abs(np.median(_angle(low[voiced, 2:])) - 551.3) < 20
    assert abs(np.median(_angle(high[high[:, 1] >= 0.5, 2:])) - 551.3) < 20
    assert abs(np.median(_angle(fifth[fifth[:, 1] >= 0.5, 2:])) - (551.3 + 702.0 - 1200)) < 20  # E, a fifth up
    np.testing.assert_allclose(np.hypot(low[:, 2], low[:, 3]), 1.0, atol=1e-6)  # a point on the circle per frame


def test_pitch_class_neighbours_across_the_octave_are_near():
    """B and the C above it are 100 cents apart, not 1100: the reason for a circle instead of cents mod 1200."""
    b, c = pitch_class(np.array([1100.0 + 6000, 0.0 + 7200]))
    assert np.linalg.norm(b - c) == pytest.approx(2 * np.sin(np.pi * 100 / 1200))


def _frames(cents: list[float], voicing: list[float]) -> np.ndarray:
    cents_ = np.array(cents)
    return np.concatenate([np.stack([cents_, np.array(voicing)], 1), pitch_class(cents_)], 1)


def test_pooling_averages_the_pitch_class_over_voiced_frames_only():
    # voiced frames at 6000 cents (class 0); unvoiced ones read 6600 cents (class 600: the opposite point)
    frames = _frames([6000, 6600, 6000, 6600], [0.9, 0.1, 0.9, 0.1])
    times = np.arange(4) / 100.0  # one store frame
    pooled = pool_to_store_rate(frames, times, 0.08, 12.5, "pitch")
    np.testing.assert_allclose(pooled[0, 2:], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(pool_clip(frames, "pitch")[2:], [0.0, 1.0], atol=1e-6)
    unvoiced = pool_to_store_rate(frames[[1, 3]], times[:2], 0.08, 12.5, "pitch")
    assert unvoiced[0, 2:].tolist() == [0.0, 0.0]  # no voiced frame: 0, like its cents


def test_slots_and_clip_mask_the_pitch_class_where_unvoiced():
    frames = _frames([6000, 6100, 6600, 6600], [0.9, 0.9, 0.1, 0.1])
    slots, mask = pool_to_slots(frames, 2, "pitch")
    np.testing.assert_allclose(slots[0, 2:], pitch_class(np.array([6000.0, 6100.0])).mean(0), atol=1e-6)
    assert mask[0].all() and mask[1].tolist() == [False, True, False, False]  # voicing alone is defined
    spec = TargetSpec("pitch-class", "pitch", 4, "-", np.zeros(4), np.ones(4), np.zeros(4), np.ones(4))
    silent = np.array([0.0, 0.0, 0.0, 0.0])  # a clip with no voiced frame: voiced fraction 0
    targets = make_targets(spec, [frames, frames[2:]], [pool_clip(frames, "pitch"), silent], k=2)
    assert targets.clip_mask.tolist() == [[1, 1, 1, 1], [0, 1, 0, 0]]


def test_stats_count_the_pitch_class_where_voiced():
    frames = _frames([6000, 0, 6200], [0.9, 0.1, 0.6])
    stats = RunningStats.empty(4)
    stats.update(frames, stats_mask("pitch", frames))
    assert stats.count.tolist() == [2.0, 3.0, 2.0, 2.0]


def test_the_loss_learns_the_pitch_class_where_voiced_and_leaves_it_free_elsewhere():
    slots = torch.tensor([[[0.5, 0.9, 0.0, 1.0], [0.0, 0.1, 0.0, 0.0]]])  # slot 1 unvoiced
    mask = torch.tensor([[[1.0, 1, 1, 1], [0, 1, 0, 0]]])
    targets = SlotTargets(slots, mask, slots[:, 0], mask[:, 0], torch.ones(1))
    pred = torch.zeros(1, 2, 4, requires_grad=True)
    clip = torch.zeros(1, 4, requires_grad=True)
    expert_loss("pitch", pred, clip, targets).backward()
    assert pred.grad[0, 0, 3] != 0  # the voiced slot's cosine (target 1) is learnt
    assert pred.grad[0, 1, [0, 2, 3]].abs().max() == 0  # the unvoiced slot's cents and class are free
    assert pred.grad[0, 1, 1] != 0  # its voicing is not
