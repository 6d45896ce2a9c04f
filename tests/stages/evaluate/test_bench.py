"""bench generate runs both models on the same prompts and reports ratios with their targets."""

import json

import pytest

from tests.conftest import cli


def test_bench_generate_reports_ratios_against_the_baseline():
    result = cli("bench", "generate", "--think-tokens", 8, "--seconds", 2, "--max-new-tokens", 4, "--repeats", 1)
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["think_tokens"] == 8 and figures["prompt_tokens_baseline"] > 8
    assert figures["ttft_target"] == pytest.approx(1 + 8 / figures["prompt_tokens_baseline"] + 0.05)
    for key in ("ttft_base_s", "ttft_coat_s", "decode_base_ms_per_token", "decode_coat_ms_per_token"):
        assert figures[key] > 0
    assert figures["ttft_ratio"] == pytest.approx(figures["ttft_coat_s"] / figures["ttft_base_s"])
