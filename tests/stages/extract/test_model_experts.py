"""The model experts on tiny random instances of their real classes, saved as real weights are published."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from stages.extract.experts import EXPERTS, expert_table, load_expert
from stages.extract.experts.beats import BeatsExpert
from stages.extract.experts.beats_model import Beats
from stages.extract.experts.tiny import make_tiny, tiny_beats_config
from tests.helpers import cli, copy_corpus

MODEL_EXPERTS = [
    "beats",
    "beats-tags",
    "whisper",
    "wavlm",
    "hubert",
    "mert",
    "wav2vec2-emotion",
    "clap",
    "emotion2vec",
    "emotion2vec-probs",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-experts")


@pytest.fixture(scope="module")
def speech_corpus(speech_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("speech") / "corpus"
    cli("shard", "--audio-dir", speech_dir, "--out", root, "--shard-size", 10)
    return root


def _waves(rate: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [(0.1 * rng.standard_normal(int(s * rate))).astype(np.float32) for s in (1.3, 3.7, 0.6)]


# FunASR's first import costs seconds: its experts' tests run in the slow lane
FUNASR = ("emotion2vec", "emotion2vec-probs")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in FUNASR else n for n in MODEL_EXPERTS])
def test_frames_follow_the_duration_and_batching_changes_nothing(name, tiny_dir):
    expert = load_expert(name, str(make_tiny(name, tiny_dir)))
    waves = _waves(expert.sample_rate)
    batched = expert(waves)
    for wave, out in zip(waves, batched):
        single = expert([wave])[0]
        assert out.shape == single.shape and out.shape[1] == expert.dim
        np.testing.assert_allclose(out, single, atol=1e-4 * max(1.0, float(np.abs(single).max())))
        if expert.frame_rate:  # frame experts: one frame per 1 / frame_rate of audio, give or take one
            assert abs(len(out) - len(wave) / expert.sample_rate * expert.frame_rate) <= 1.5
            times = expert.frame_times(len(out))
            assert np.all(np.diff(times) > 0) and times[-1] <= len(wave) / expert.sample_rate
        else:
            assert len(out) == 1
    if expert.kind == "probs":
        assert np.allclose([o.sum() for o in batched], 1.0, atol=1e-5)


# The fast lane runs one expert of each way of loading but FunASR's (a BEATs .pt, transformers folders); the
# others' end-to-end runs are in the slow lane (each is seconds; their unit tests above stay fast).
FAST_END_TO_END = ("whisper",)  # one model expert end to end in the fast lane; every one in the full suite


@pytest.mark.parametrize(
    "name", [n if n in FAST_END_TO_END else pytest.param(n, marks=pytest.mark.slow) for n in MODEL_EXPERTS]
)
def test_extract_on_synthetic_and_real_speech_then_store_check(name, tiny_dir, synth_corpus, speech_corpus, tmp_path):
    checkpoint = make_tiny(name, tiny_dir)
    for source in (synth_corpus, speech_corpus):
        corpus = copy_corpus(source, tmp_path / source.parent.name)
        cli(
            "extract", "--corpus", corpus, "--expert", name, "--checkpoint", checkpoint, "--workers", 0, "--no-progress"
        )
        cli("store", "check", corpus)
        stats = json.loads((corpus / "stats" / f"{name}.json").read_text())
        assert stats["dim"] == load_expert(name, str(checkpoint)).dim


def test_beats_windows_continue_evenly_on_a_25_s_clip(tiny_dir):
    expert = BeatsExpert(str(make_tiny("beats", tiny_dir)))
    wave = (0.1 * np.random.default_rng(2).standard_normal(25 * 16000)).astype(np.float32)
    frames = expert([wave])[0]
    whole = (1 + (len(wave) - 400) // 160) // 16  # the patches of the clip taken in one piece
    assert len(frames) == whole == 156
    times = expert.frame_times(len(frames))
    np.testing.assert_allclose(np.diff(times), 0.16)
    # a window boundary falls after patch 62: the frames on either side are ordinary neighbours
    first = expert([wave[: 62 * 2560 + 240]])[0]
    np.testing.assert_allclose(frames[:62], first, atol=1e-5)


def test_beats_refuses_checkpoints_of_another_model(tiny_dir, synth_corpus, tmp_path):
    cfg = tiny_beats_config()
    weights = Beats(cfg).state_dict()
    weights["encoder.extra.weight"] = torch.zeros(1)
    del weights["encoder.layer_norm.bias"]
    bad = tmp_path / "other.pt"
    torch.save({"cfg": dataclasses.asdict(cfg), "model": weights}, bad)
    result = cli("extract", "--corpus", synth_corpus, "--expert", "beats", "--checkpoint", bad, expect=2)
    assert "encoder.layer_norm.bias" in result.output and "encoder.extra.weight" in result.output
    pretrained = make_tiny("beats", tiny_dir)
    result = cli("extract", "--corpus", synth_corpus, "--expert", "beats-tags", "--checkpoint", pretrained, expect=2)
    assert "without a tag predictor" in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--expert", "beats"], "download BEATs_iter3_plus_AS2M.pt"),
        (["--expert", "whisper", "--checkpoint", "/nonexistent/whisper"], "no whisper weights at /nonexistent/whisper"),
        (["--expert", "wavlm", "--checkpoint", "HUBERT"], "not wavlm"),
        (["--expert", "emotion2vec", "--checkpoint", "/nonexistent/e2v"], "no emotion2vec model at /nonexistent/e2v"),
        (["--expert", "beatz"], "unknown expert 'beatz'"),
        (["--expert", "whisper,beats", "--checkpoint", "x"], "say which expert it is for"),
    ],
)
def test_missing_or_wrong_weights_are_one_line_errors(args, says, tiny_dir, synth_corpus):
    args = [str(make_tiny("hubert", tiny_dir)) if a == "HUBERT" else a for a in args]
    result = cli("extract", "--corpus", synth_corpus, *args, "--no-progress", expect=2)
    assert says in result.output and "Traceback" not in result.output


def test_list_experts_shows_every_registered_expert():
    output = cli("extract", "--list-experts").output
    assert set(expert_table()) == set(EXPERTS)
    lines = output.splitlines()
    for name, row in expert_table().items():  # piped: each expert on one line, every cell whole
        line = next(line for line in lines if line.startswith(f"│ {name} "))
        assert all(cell.replace("->", "→") in line for cell in row), line


def test_the_experts_without_weights_are_those_whose_loader_takes_no_checkpoint():
    import inspect

    from stages.extract.experts import WEIGHTLESS, expert_class

    takes_none = {n for n in EXPERTS if "checkpoint" not in inspect.signature(expert_class(n)).parameters}
    assert WEIGHTLESS == takes_none


@pytest.mark.slow
def test_emotion2vec_without_the_funasr_extra_says_how_to_install_it(tiny_dir, monkeypatch, synth_corpus):
    checkpoint = make_tiny("emotion2vec", tiny_dir)
    monkeypatch.setitem(__import__("sys").modules, "funasr", None)  # as if the extra were not installed
    result = cli("extract", "--corpus", synth_corpus, "--expert", "emotion2vec", "--checkpoint", checkpoint, expect=2)
    assert "pip install 'coat-pipe[emotion2vec]'" in result.output


def test_every_expert_class_describes_itself_and_builds_its_own_twin(tmp_path):
    """One plugin pattern: the class holds its table row and its tiny twin; an expert with weights builds one
    its own loader reads back, one without builds none."""
    from stages.extract.experts import WEIGHTLESS, expert_class

    for name in EXPERTS:
        cls = expert_class(name)
        assert cls.name == name and all(cls.table_row()), name
        built = cls.build_tiny(tmp_path / name) if name in WEIGHTLESS else None
        assert built is None, name
    assert expert_class("pitch").table_row()[0] == "pitch" and expert_class("mert").table_row()[0] == "music"
