"""`bench extract` and `bench check`: the figures they report are consistent with the corpus they made
(the audio they timed, the findings on a sound store) and with each other (each ratio is the quotient of
its two timings). No bound on a ratio is asserted: those are measured by hand (docs/PERFORMANCE.md)."""

import pytest

from stages.bench.extract import bench_extract
from stages.bench.store_check import bench_check
from stages.lab.synth import write_synth_corpus
from store_schema.corpus import read_corpus


@pytest.mark.slow
def test_bench_extract_times_the_corpus_it_made(tmp_path):
    result = bench_extract(["mel"], 6, 0, "cpu", "float32", 240.0, tmp_path)
    write_synth_corpus(tmp_path / "same", 6, seed=0, shard_size=1, progress=False)  # what the bench synthesises
    assert result["audio_seconds"] == pytest.approx(read_corpus(tmp_path / "same").seconds, abs=0.01)
    assert result["ratio"] == pytest.approx(result["bare_seconds"] / result["full_seconds"])
    assert result["ratio"] == pytest.approx(result["full_speed"] / result["bare_speed"])


@pytest.mark.slow
def test_bench_check_finds_nothing_on_a_sound_store_and_reports_its_size():
    result = bench_check(None, 8, ["mel"])
    assert result["findings"] == 0 and result["clips"] == 8
    assert result["ratio"] == pytest.approx(result["full_seconds"] / result["quick_seconds"])
    assert result["full_s_per_audio_hour"] == pytest.approx(result["full_seconds"] / result["audio_hours"])
