"""`bench generate`'s figures against each other: the ratios are the measured times' quotients and the
time-to-first-token target is 1 + K/L + 0.05 for the prompt length it reports. The times themselves are
measured by hand and recorded in docs/PERFORMANCE.md; a timing bound here could only be arbitrary."""

import json

import pytest

from tests.helpers import cli


@pytest.mark.slow
def test_bench_generate_reports_ratios_of_its_own_times():
    result = cli("bench", "generate", "--think-tokens", 8, "--seconds", 2, "--max-new-tokens", 4, "--repeats", 1)
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["think_tokens"] == 8
    assert figures["prompt_tokens_baseline"] > 50  # 2 s of audio are 50 placeholders at the encoder's 25 Hz
    assert figures["ttft_ratio"] == pytest.approx(figures["ttft_coat_s"] / figures["ttft_base_s"])
    assert figures["decode_ratio"] == pytest.approx(
        figures["decode_coat_ms_per_token"] / figures["decode_base_ms_per_token"]
    )
    assert figures["ttft_target"] == pytest.approx(1 + 8 / figures["prompt_tokens_baseline"] + 0.05)
