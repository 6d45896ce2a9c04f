import numpy as np

from store_schema.stats import RunningStats, stats_mask


def test_merged_shards_equal_one_pass_over_everything():
    rng = np.random.default_rng(0)
    parts = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (5, 1, 40, 7)]
    merged = RunningStats.empty(4)
    for part in parts:
        shard = RunningStats.empty(4)
        shard.update(part)
        merged.merge(RunningStats.from_dict(shard.to_dict()))  # through the JSON form, as the store does
    everything = np.concatenate(parts)
    np.testing.assert_allclose(merged.mean, everything.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.std, everything.std(axis=0), rtol=1e-12)
    assert merged.count.tolist() == [53.0] * 4


def test_pitch_cents_count_only_voiced_frames():
    frames = np.array([[6000.0, 0.9], [0.0, 0.1], [6200.0, 0.6]])
    stats = RunningStats.empty(2)
    stats.update(frames, stats_mask("pitch", frames))
    assert stats.count.tolist() == [2.0, 3.0]
    assert stats.mean[0] == 6100.0
    assert stats_mask("spectrum", frames) is None
