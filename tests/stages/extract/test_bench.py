"""Smoke tests of `bench extract` and `bench check`: both paths run and the table is printed. The figures
are measured by hand and recorded in docs/PERFORMANCE.md; no bound on a ratio is asserted here."""

import pytest

from tests.helpers import cli


@pytest.mark.slow
def test_bench_extract_smoke(tmp_path):
    out = cli("bench", "extract", "--expert", "mel", "--clips", 6, "--workers", 0, "--workdir", tmp_path).output
    assert "bare loop" in out and "full extract path" in out and "ratio full / bare throughput:" in out


@pytest.mark.slow
def test_bench_check_smoke():
    """Both modes run on a fresh synthetic store and find nothing."""
    result = cli("bench", "check", "--clips", 8, "--expert", "mel")
    assert "--quick (structure)" in result.output and "full (every value and sample)" in result.output
    assert "ratio full / quick:" in result.output
