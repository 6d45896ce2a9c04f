import numpy as np
import pytest

from stages.extract.pooling import num_store_frames, pool_clip, pool_to_store_rate


def test_frame_count_is_rounded_duration_times_rate():
    assert num_store_frames(1.0, 12.5) == 12
    assert num_store_frames(1.05, 12.5) == 13
    assert num_store_frames(0.01, 12.5) == 1  # never zero for a clip that has audio


def test_mean_pooling_by_timestamp():
    # 100 Hz frames whose value is their own time: store frame j (80 ms) averages frames in its span.
    times = np.arange(200) / 100.0
    frames = times[:, None].repeat(3, axis=1)
    pooled = pool_to_store_rate(frames, times, 2.0, 12.5, "spectrum")
    assert pooled.shape == (25, 3)
    for j in range(25):
        inside = times[(times >= j * 0.08 - 1e-9) & (times < (j + 1) * 0.08 - 1e-9)]
        assert pooled[j, 0] == pytest.approx(inside.mean(), abs=1e-6)


def test_slow_expert_fills_every_store_frame_from_the_nearest_frame():
    times = (np.arange(7) + 0.5) / 6.25  # 6.25 Hz, e.g. BEATs: fewer frames than store frames
    frames = np.arange(7, dtype=float)[:, None]
    pooled = pool_to_store_rate(frames, times, 7 / 6.25, 12.5, "embedding")
    assert len(pooled) == 14
    centres = (np.arange(14) + 0.5) / 12.5
    expected = np.abs(times[None, :] - centres[:, None]).argmin(axis=1)
    hit = np.floor(times * 12.5).astype(int)
    expected[hit] = np.arange(7)
    np.testing.assert_array_equal(pooled[:, 0], expected)


def test_pitch_averages_cents_over_voiced_frames_only():
    times = np.arange(10) / 100.0  # all inside store frame 0
    cents = np.array([6000, 6000, 9999, 9999, 6100, 6100, 9999, 9999, 6000, 6000], float)
    voicing = np.array([0.9, 0.9, 0.1, 0.1, 0.8, 0.8, 0.2, 0.2, 0.9, 0.9])
    frames = np.stack([cents, voicing], axis=1)
    pooled = pool_to_store_rate(frames, times, 0.08, 12.5, "pitch")
    assert pooled[0, 0] == pytest.approx(6100 / 3 + 4000, abs=1e-3)  # mean of the six voiced frames
    assert pooled[0, 1] == pytest.approx(voicing.mean())
    clip = pool_clip(frames, "pitch")
    assert clip[0] == pytest.approx(pooled[0, 0], abs=1e-2)
    assert clip[1] == pytest.approx(0.6)


def test_unvoiced_store_frame_has_zero_cents_and_low_voicing():
    times = np.arange(24) / 100.0  # store frames: [0, 80) ms voiced, the two after unvoiced
    frames = np.stack([np.full(24, 7000.0), np.r_[np.full(8, 0.9), np.full(16, 0.05)]], axis=1)
    pooled = pool_to_store_rate(frames, times, 0.24, 12.5, "pitch")
    assert pooled[0, 0] == pytest.approx(7000.0)
    assert pooled[-1, 0] == 0.0 and pooled[-1, 1] < 0.5


def test_shape_errors_name_the_expected_shape():
    with pytest.raises(ValueError, match="expected"):
        pool_to_store_rate(np.zeros((3, 2)), np.zeros(4), 1.0, 12.5, "embedding")
