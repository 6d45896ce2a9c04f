import numpy as np
import pytest

from stages.train.targets import TargetSpec, make_targets, pool_to_slots
from store_schema.stats import ExpertStats


def test_a_rising_target_gives_rising_slots():
    frames = np.linspace(0, 1, 50)[:, None].repeat(3, axis=1)
    slots, mask = pool_to_slots(frames, 8, "spectrum")
    assert slots.shape == (8, 3) and mask.all()
    assert (np.diff(slots[:, 0]) > 0).all()
    assert slots[0, 0] == pytest.approx(frames[:6, 0].mean(), abs=1e-6)  # slot 0 = first 8th of the clip


def test_more_slots_than_frames_still_defines_every_slot():
    frames = np.array([[1.0], [2.0], [3.0]])
    slots, mask = pool_to_slots(frames, 8, "embedding")
    assert mask.all()
    np.testing.assert_array_equal(slots[:, 0], [1, 1, 1, 2, 2, 3, 3, 3])  # the frame under each slot's centre


def test_pitch_slots_average_voiced_cents_and_mask_unvoiced():
    frames = np.array([[6000, 0.9], [6200, 0.9], [0, 0.1], [0, 0.1]], dtype=float)
    slots, mask = pool_to_slots(frames, 2, "pitch")
    assert slots[0, 0] == pytest.approx(6100) and mask[0, 0]
    assert not mask[1, 0] and slots[1, 1] == pytest.approx(0.1)


def test_standardisation_uses_the_stats_file():
    stats = {
        "expert": "mel",
        "kind": "spectrum",
        "dim": 2,
        "fingerprint": "f",
        "frames": {"mean": [1.0, -2.0], "std": [2.0, 4.0]},
        "clip": {"mean": [0.0, 0.0], "std": [1.0, 10.0]},
    }
    spec = TargetSpec.from_stats(ExpertStats.from_json(stats))
    frames = np.array([[3.0, 2.0], [3.0, 2.0]])
    t = make_targets(spec, [frames, None], [np.array([5.0, 5.0]), None], k=2)
    np.testing.assert_allclose(t.slots[0].numpy(), [[1.0, 1.0], [1.0, 1.0]])  # (3-1)/2, (2+2)/4
    np.testing.assert_allclose(t.clip[0].numpy(), [5.0, 0.5])
    assert t.valid.tolist() == [1.0, 0.0] and t.slot_mask[1].sum() == 0
