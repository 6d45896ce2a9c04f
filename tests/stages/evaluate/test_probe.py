"""Probes: after CoAT training the thinking positions hold pitch that the baseline's same positions do not."""

import json

import numpy as np
import pytest

from stages.evaluate.answer import load_run
from stages.evaluate.probe import clip_folds, probe_one, slot_folds
from tests.helpers import cli

TRAIN = ["train", "--backbone", "tiny-qwen2-audio", "--batch-size", "4", "--lr", "3e-3", "--workers", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CoAT run and its --no-think baseline (same data, steps, LoRA), and a held-out corpus."""
    root = tmp_path_factory.mktemp("probe")
    cli("synth", "--out", root / "train", "--clips", 60, "--shard-size", 30, "--seed", 7)
    cli("extract", "--corpus", root / "train", "--expert", "mel,pitch", "--workers", 0, "--no-progress")
    cli("synth", "--out", root / "heldout", "--clips", 48, "--shard-size", 24, "--seed", 8, "--name", "heldout")
    cli("extract", "--corpus", root / "heldout", "--expert", "pitch", "--workers", 0, "--no-progress")
    common = [*TRAIN, "--corpus", root / "train", "--steps", 60]
    cli(*common, "--out", root / "coat", "--think-tokens", 8)
    cli(*common, "--out", root / "base", "--no-think")
    return root


def test_cross_validation_by_clip_cannot_learn_clip_identity():
    """Features that identify the clip, targets random per clip: a probe that saw other rows of the same
    clip would look up its target; one cross-validated by clip can only score at or below about 0. The
    same data split by row instead scores high, so this test fails if the folds leak."""
    rng = np.random.default_rng(1)
    clips, k, hidden, dim = 60, 8, 96, 3  # more dimensions than clips: a linear map can tell every clip apart
    identity = np.repeat(rng.normal(size=(clips, hidden)), k, axis=0) + 0.01 * rng.normal(size=(clips * k, hidden))
    targets = np.repeat(rng.normal(size=(clips, dim)), k, axis=0)
    mask = np.ones_like(targets, dtype=bool)
    by_clip = probe_one("embedding", identity, targets, mask, slot_folds(clip_folds(clips), k))
    by_row = probe_one("embedding", identity, targets, mask, np.arange(clips * k) % 5)
    assert by_clip <= 0.05, by_clip
    assert by_row > 0.9, by_row


@pytest.mark.slow
def test_pitch_at_the_thinking_positions_beats_the_baseline(trained, tmp_path):
    coat, base = trained / "coat", trained / "base"
    result = cli(
        "probe", "--run", coat, "--run", base, "--corpus", trained / "heldout", "--experts", "pitch", "--out", tmp_path
    )
    scores = json.loads((tmp_path / "probes.json").read_text())
    layer = load_run(coat).think_layer  # the layer the heads read: no choice made on the held-out clips
    # The slot contour is what the heads are trained to predict, and gives 8 rows per clip; the clip mean
    # rests on the ~40 voiced held-out clips alone and swings with the twin's random init.
    coat_score, base_score = (
        scores[str(coat)]["pitch/slots@think"][layer],
        scores[str(base)]["pitch/slots@think"][layer],
    )
    # Against max(baseline, 0): a negative baseline R² (worse than predicting the mean) is no bar to clear.
    assert coat_score > max(base_score, 0.0) + 0.05, (coat_score, base_score)
    assert set(scores[str(coat)]) == {
        "pitch/slots@think",
        "pitch/clip@think",
        "pitch/clip@answer",
        "pitch/slots@answer",
    }
    assert all(len(v) == len(scores[str(coat)]["pitch/clip@think"]) for v in scores[str(base)].values())
    assert "pitch/clip@think" in result.output and (tmp_path / "probe_layers.png").stat().st_size > 5_000


@pytest.mark.slow
def test_probe_refuses_an_expert_missing_from_the_store(trained, tmp_path):
    result = cli(
        "probe",
        "--run",
        trained / "coat",
        "--corpus",
        trained / "heldout",
        "--experts",
        "mel",
        "--out",
        tmp_path,
        expect=2,
    )
    assert "no `mel` in the store" in result.output


@pytest.mark.slow
def test_likelihood_agrees_with_a_greedy_answer_that_is_one_of_the_choices(trained):
    """On a trained run, wherever the greedy answer is one of its question type's answers, likelihood
    scoring over those answers picks the same one."""
    from stages.evaluate.answer import answer
    from stages.evaluate.run_eval import item_wave
    from stages.lab.synth import ANSWERS
    from stages.lab.synth_benchmark import load_synth
    from stages.train.likelihood import pick_choice

    agreed = 0
    for run in ("coat", "base"):  # with the block in the prompt and without
        model = load_run(trained / run)
        for item in load_synth(trained / "heldout"):  # 48 clips
            choices = list(ANSWERS[item.groups["task"]])
            wave = item_wave(item)
            said = answer(model, [wave], [item.question], max_new_tokens=8)[0].text
            if said in choices:
                assert pick_choice(model, wave, item.question, choices)[0] == said, (run, item.id, said)
                agreed += 1
    # After 60 steps many answers do not fit their question yet (the CoAT run fitted 2 of 48 in CI on
    # 2026-12-01); over both runs the check must still have run on several.
    assert agreed >= 4, agreed
