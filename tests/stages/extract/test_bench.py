from tests.conftest import cli


def test_bench_extract_runs_both_paths_and_reports_their_ratio(tmp_path):
    """Runs, on 6 clips; the figure itself is measured by hand and recorded in docs/PERFORMANCE.md."""
    out = cli("bench", "extract", "--expert", "mel", "--clips", 6, "--workers", 0, "--workdir", tmp_path).output
    assert "bare loop" in out and "full extract path" in out
    ratio = float(out.split("ratio full / bare throughput:")[1].split()[0])
    assert 0 < ratio < 10


def test_bench_check_times_both_modes_on_a_sound_store():
    """A smoke test: both modes run on a fresh synthetic store and find nothing; no bound on the ratio."""
    result = cli("bench", "check", "--clips", 8, "--expert", "mel")
    assert "--quick (structure)" in result.output and "full (every value and sample)" in result.output
    assert "ratio full / quick:" in result.output
