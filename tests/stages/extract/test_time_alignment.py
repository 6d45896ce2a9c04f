"""Where an event in time lands in the store: clips with clicks and a pitch step at known times, through
`shard` and `extract`, for `mel`, `pitch` and a model expert (Whisper's encoder), then into the slots.

The expectations come from each expert's own framing, written out here: a native frame is centred on
sample i × hop (mel: 25 ms Hann windows every 10 ms; Whisper: its log-mel every 10 ms, then a stride-2
convolution, one encoder frame per 20 ms), swift-f0's frames sit at the times the library itself
reports, and store frame j covers [j, j + 1) × 80 ms. A click on the centre of native frame n moves
native frames n − 1, n, n + 1 and no other (their windows reach it, the next ones' do not). The clicks
are put on the second native frame of one store frame and the second-to-last of another, so a frame
time one native frame early or late moves one click's frames across a store-frame boundary.
"""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import swift_f0

from stages.extract.experts.tiny import make_tiny
from stages.train.targets import pool_to_slots
from store_schema.corpus import read_corpus
from store_schema.layout import CENTS_REFERENCE_HZ, VOICED_THRESHOLD
from store_schema.reader import ShardStore
from tests.helpers import cli

RATE, SECONDS, STORE_RATE, K = 16000, 3.2, 12.5, 8
STORE_HOP = int(RATE / STORE_RATE)  # 1280 samples per store frame
ANCHOR = 8000  # a click at 0.5 s in both clips: Whisper's log-mel is scaled by the clip's own maximum
STEP_AT = 1.6  # s: 200 Hz before, 400 Hz after (store frame 20 starts there)
NATIVE_HOP = {"mel": 160, "whisper": 320}  # samples per native frame


def _click_samples(hop: int) -> dict[int, int]:
    """Store frame -> the sample of the click placed in it: on the 2nd native frame of store frame 15,
    on the 2nd-to-last native frame of store frame 27."""
    per = STORE_HOP // hop
    return {15: (15 * per + 1) * hop, 27: (27 * per + per - 2) * hop}


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """One shard: the anchor alone, the anchor with each expert's test clicks, and the pitch step."""
    root = tmp_path_factory.mktemp("aligned")
    n = int(SECONDS * RATE)
    reference = np.zeros(n, np.float32)
    reference[ANCHOR] = 0.5
    clips = {"reference": reference}
    for expert, hop in NATIVE_HOP.items():
        clips[f"clicks-{expert}"] = reference.copy()
        clips[f"clicks-{expert}"][list(_click_samples(hop).values())] = 0.5
    t = np.arange(n) / RATE
    phase = 2 * np.pi * np.cumsum(np.where(t < STEP_AT, 200.0, 400.0)) / RATE  # continuous phase at the step
    # eight harmonics, as a voice has: swift-f0 calls a pure sine unvoiced about half the time
    step = sum(np.sin(k * phase) / k for k in range(1, 9))
    step = (0.4 * step / np.abs(step).max()).astype(np.float32)
    rows = []
    for key, wave in (clips | {"step": step}).items():
        sf.write(root / f"{key}.wav", wave, RATE, subtype="PCM_16")
        conversation = [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": "Here."}]
        rows.append(json.dumps({"audio": f"{key}.wav", "key": key, "messages": conversation}))
    (root / "clips.jsonl").write_text("\n".join(rows) + "\n")
    corpus = root / "corpus"
    cli("shard", "--manifest", root / "clips.jsonl", "--out", corpus)
    cli("extract", "--corpus", corpus, "--expert", "mel,pitch", "--workers", 0, "--no-progress")
    whisper = make_tiny("whisper", root / "experts")
    # layer 0: the convolutional front end and positions, before any attention spreads a click over the clip
    cli("extract", "--corpus", corpus, "--expert", "whisper", "--checkpoint", whisper, "--set", "whisper.layer=0",
        "--workers", 0, "--no-progress")  # fmt: skip
    (shard,) = read_corpus(corpus).shards
    stored_step, _ = sf.read(root / "step.wav", dtype="float32")  # as the tar holds it: 16-bit
    return ShardStore.for_tar(read_corpus(corpus).tar_path(shard)), stored_step


def _frames(store: ShardStore, expert: str, key: str) -> np.ndarray:
    group = store.expert(expert)
    return group.frames_of(store.keys.index(key)).astype(np.float32)


@pytest.mark.parametrize("expert", ["mel", "whisper"])
def test_clicks_land_in_the_store_frames_and_slots_the_frame_rate_says(aligned, expert):
    store, _ = aligned
    clicks, reference = _frames(store, expert, f"clicks-{expert}"), _frames(store, expert, "reference")
    assert clicks.shape == reference.shape == (round(SECONDS * STORE_RATE), store.expert(expert).attrs["dim"])
    moved = np.flatnonzero(np.abs(clicks - reference).max(axis=1) > 0)
    hop = NATIVE_HOP[expert]
    expected = set()
    for sample in _click_samples(hop).values():
        centre = sample // hop  # the native frame the click sits on, and its two neighbours
        expected |= {(centre + d) * hop // STORE_HOP for d in (-1, 0, 1)}
    assert expected == set(_click_samples(hop))  # (each click's three native frames share one store frame)
    assert set(moved.tolist()) == expected
    # and in the slots: slot k holds the k-th K-th of the clip, [0.4 k, 0.4 (k + 1)) s here
    slots = {name: pool_to_slots(frames, K, "spectrum")[0] for name, frames in (("c", clicks), ("r", reference))}
    moved_slots = np.flatnonzero(np.abs(slots["c"] - slots["r"]).max(axis=1) > 0)
    slot_seconds = SECONDS / K
    assert set(moved_slots.tolist()) == {math.floor(s / RATE / slot_seconds) for s in _click_samples(hop).values()}


def test_a_pitch_step_lands_where_swift_f0_puts_it(aligned):
    """Every stored pitch frame equals the voiced mean of swift-f0's own frames whose reported times fall
    in it (a loop written here); frames well before the step hold 200 Hz, frames well after 400 Hz."""
    store, wave = aligned
    stored = _frames(store, "pitch", "step")
    result = swift_f0.SwiftF0().detect(wave, RATE)
    cents = 1200 * np.log2(np.maximum(result.pitch_hz, 1e-3) / CENTS_REFERENCE_HZ)
    for j in range(len(stored)):
        inside = (result.timestamps >= j / STORE_RATE) & (result.timestamps < (j + 1) / STORE_RATE)
        voiced = inside & (result.confidence >= VOICED_THRESHOLD)
        want = cents[voiced].mean() if voiced.any() else 0.0  # the store's convention for a frame with none voiced
        assert stored[j, 0] == pytest.approx(want, abs=4.0), j  # float16: 4 cents up here
        assert stored[j, 1] == pytest.approx(result.confidence[inside].mean(), abs=2e-3), j
    hz = CENTS_REFERENCE_HZ * 2 ** (stored[:, 0] / 1200)
    boundary = round(STEP_AT * STORE_RATE)
    assert np.allclose(hz[2 : boundary - 1], 200, rtol=0.02) and np.allclose(hz[boundary + 1 : -2], 400, rtol=0.02)
