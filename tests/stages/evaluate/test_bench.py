"""A smoke test of `bench generate`: it runs both models and prints every figure. The figures themselves are
measured by hand and recorded in docs/PERFORMANCE.md; a timing bound here could only be arbitrary."""

import json

import pytest

from tests.helpers import cli


@pytest.mark.slow
def test_bench_generate_smoke():
    result = cli("bench", "generate", "--think-tokens", 8, "--seconds", 2, "--max-new-tokens", 4, "--repeats", 1)
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["think_tokens"] == 8
    for key in ("ttft_base_s", "ttft_coat_s", "decode_base_ms_per_token", "decode_coat_ms_per_token"):
        assert figures[key] > 0
