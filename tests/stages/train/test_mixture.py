"""Many corpora, one stream: a weighted mixture drawn from the seed, per-corpus experts, pooled stats,
duration-budget batches, and validation while training."""

import json

import numpy as np
import pytest
import torch

from stages.train.config import CorpusConfig, ModelConfig, parse_corpus_flag
from stages.train.data import plan_epoch, plan_epoch_by_duration
from stages.train.model import CoatModel
from stages.train.stream import TrainingStream, load_sources
from store_schema.corpus import read_corpus
from store_schema.reader import ShardStore
from store_schema.stats import RunningStats, read_stats, stats_mask
from tests.helpers import cli


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    """A: 24 clips with mel and pitch; B: 12 clips with mel only (other seeds, other clips); and `held`, 4
    clips with mel, for validation."""
    root = tmp_path_factory.mktemp("mixture")
    for name, clips, seed, experts in (("a", 24, 11, "mel,pitch"), ("b", 12, 12, "mel"), ("held", 4, 13, "mel")):
        cli("synth", "--out", root / name, "--clips", clips, "--shard-size", 6, "--seed", seed)
        cli("extract", "--corpus", root / name, "--expert", experts, "--workers", 0, "--no-progress")
    return root / "a", root / "b"


@pytest.fixture(scope="module")
def held(two_corpora):
    return two_corpora[0].parent / "held"


def _sources(two_corpora, weights=(3.0, 1.0)):
    a, b = two_corpora
    entries = [
        CorpusConfig(path=str(a), weight=weights[0], name="a"),
        CorpusConfig(path=str(b), weight=weights[1], name="b"),
    ]
    return load_sources(entries, [], True)


def test_flags_name_weight_and_path():
    assert parse_corpus_flag("data/a") == {"path": "data/a"}
    assert parse_corpus_flag("data/a:3") == {"path": "data/a", "weight": 3.0}
    assert parse_corpus_flag("speech=s3://bucket/x:0.5") == {"path": "s3://bucket/x", "weight": 0.5, "name": "speech"}
    assert parse_corpus_flag("s3://bucket/x") == {"path": "s3://bucket/x"}


def test_an_expert_held_by_two_corpora_is_standardised_with_their_pooled_stats(two_corpora):
    """Exactly the stats of every frame of both stores, recomputed here from the frames."""
    sources, specs, experts = _sources(two_corpora)
    assert experts == ["mel", "pitch"] and [s.experts for s in sources] == [["mel", "pitch"], ["mel"]]
    frames = RunningStats.empty(128)
    for corpus_dir in two_corpora:
        corpus = read_corpus(corpus_dir)
        for shard in corpus.shards:
            block = ShardStore.for_tar(corpus.tar_path(shard)).expert("mel").frames[:]
            frames.update(block, stats_mask("spectrum", block))
    np.testing.assert_allclose(specs["mel"].frame_mean, frames.mean, rtol=1e-6)
    np.testing.assert_allclose(specs["mel"].frame_std, frames.std, rtol=1e-5)
    # an expert only A holds keeps A's own record
    np.testing.assert_array_equal(
        specs["pitch"].frame_mean, np.float32(read_stats(two_corpora[0], "pitch").frames.mean)
    )


def test_the_mixture_is_drawn_by_weight_the_same_on_every_rank(two_corpora):
    sources, _, _ = _sources(two_corpora)
    streams = [TrainingStream(sources, 7, rank, 2, 2) for rank in (0, 1)]
    drawn = streams[0].draws(0, 4000)
    share = (drawn == 0).mean()
    assert abs(share - 0.75) < 3 * np.sqrt(0.75 * 0.25 / 4000)  # within sampling error of 3:1
    assert np.array_equal(drawn, streams[1].draws(0, 4000))  # no communication needed: the same draws
    steps = [stream.batches(0, 60) for stream in streams]
    for zero, one in zip(*steps):
        assert zero.source == one.source and zero.epoch == one.epoch and not set(zero.items) & set(one.items)
    # each corpus cycles on its own epoch count: its k-th draw is in epoch k // (its global steps an epoch)
    for source in (0, 1):
        per_epoch = len(streams[0].epoch_plan(source, 0))
        epochs = [b.epoch for b in steps[0] if b.source == source]
        assert epochs == [k // per_epoch for k in range(len(epochs))] and epochs[-1] > 0
    # a stream restarted mid-way continues exactly
    assert streams[0].batches(37, 60) == TrainingStream(sources, 7, 0, 2, 2).batches(37, 60)


def test_a_clip_without_an_experts_targets_teaches_its_head_nothing(two_corpora):
    sources, specs, _ = _sources(two_corpora)
    from stages.train.data import PlannedBatches

    torch.manual_seed(0)
    model = CoatModel.build(ModelConfig(backbone="tiny-qwen2-audio", think_tokens=4, head_width=32), specs)
    dataset = PlannedBatches(
        [(str(s.corpus.root), s.experts) for s in sources], [[(1, 0, 0), (1, 0, 1)], [(0, 0, 0), (0, 0, 1)]]
    )
    for j, has_pitch in ((0, False), (1, True)):
        model.zero_grad(set_to_none=True)
        batch = model.batch(dataset[j])
        assert batch.targets["pitch"].valid.tolist() == ([1.0, 1.0] if has_pitch else [0.0, 0.0])
        out = model(batch)
        out.loss.backward()
        pitch_grads = [p.grad for p in model.heads["pitch"].parameters() if p.grad is not None]
        moved = any(g.abs().sum() > 0 for g in pitch_grads)
        assert moved == has_pitch and (float(out.expert_losses["pitch"]) > 0) == has_pitch


@pytest.mark.slow  # end to end; the fast lane keeps to 2 minutes
def test_duration_budgets_pad_less_than_fixed_counts_at_the_same_mean_duration(tmp_path):
    cli("synth", "--out", tmp_path / "long", "--clips", 240, "--shard-size", 60, "--seed", 4, "--min-seconds", 1,
        "--max-seconds", 30)  # fmt: skip
    corpus = read_corpus(tmp_path / "long")
    rng = np.random.default_rng(0)
    seconds = [rng.uniform(1, 30, s.samples) for s in corpus.shards]  # stand-in lengths at 12.5 Hz
    lengths = [np.round(s * 12.5).astype(int) for s in seconds]
    usable = [list(range(s.samples)) for s in corpus.shards]

    def padding(batches):
        padded = sum(
            max(int(lengths[s][i]) for s, i in b) * len(b) - sum(int(lengths[s][i]) for s, i in b) for b in batches
        )
        return padded / sum(max(int(lengths[s][i]) for s, i in b) * len(b) for b in batches)

    fixed = plan_epoch(usable, {}, 0, 0, 0, 1, 4, 64, lengths).batches
    mean_batch_seconds = np.mean([sum(lengths[s][i] for s, i in b) / 12.5 for b in fixed])

    def by_budget(seconds):
        return plan_epoch_by_duration(usable, {}, 0, 0, 0, 1, seconds, lengths, 12.5, None, 64).batches

    low, high = mean_batch_seconds, 4 * mean_batch_seconds  # the budget whose batches hold as much audio
    for _ in range(20):
        middle = (low + high) / 2
        mean = np.mean([sum(lengths[s][i] for s, i in b) / 12.5 for b in by_budget(middle)])
        low, high = (middle, high) if mean < mean_batch_seconds else (low, middle)
    budget_seconds = (low + high) / 2
    budget = by_budget(budget_seconds)
    covered = sorted(item for b in budget for item in b)
    assert covered == sorted((s, i) for s in range(len(usable)) for i in usable[s])  # every clip once
    for batch in budget:  # the budget holds (a clip longer than the budget alone excepted)
        assert len(batch) == 1 or max(lengths[s][i] for s, i in batch) / 12.5 * len(batch) <= budget_seconds
    budget_mean = np.mean([sum(lengths[s][i] for s, i in b) / 12.5 for b in budget])
    assert budget_mean == pytest.approx(mean_batch_seconds, rel=0.05)  # the same mean batch duration
    assert padding(budget) <= 0.5 * padding(fixed), (padding(budget), padding(fixed))
    two = [plan_epoch_by_duration(usable, {}, 0, 0, r, 2, 60.0, lengths, 12.5, None, 64).batches for r in (0, 1)]
    assert len(two[0]) == len(two[1])  # every rank the same number of steps


@pytest.mark.slow  # end to end; the fast lane keeps to 2 minutes
def test_validation_is_logged_recomputable_and_keeps_the_best(two_corpora, held, tmp_path):
    a, b = two_corpora[0], held
    run = tmp_path / "run"
    cli("train", "--backbone", "tiny-qwen2-audio", "--corpus", a, "--out", run, "--steps", 4, "--think-tokens", 4,
        "--batch-size", 2, "--workers", 0, "--val-corpus", f"held={b}", "--eval-every", 2, "--keep-checkpoints", 1,
        "--save-every", 1, "--lr", "3e-3")  # fmt: skip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["stage"] == "val"]
    assert [r["step"] for r in val] == [2, 4] and {"val/held/lm", "val/held/mel", "val/held/accuracy"} <= set(val[0])
    assert "val/held/pitch" not in val[0]  # b holds no pitch targets
    best = min(val, key=lambda r: r["val/held/loss"])
    tag = (run / "checkpoints" / "best").read_text()
    assert tag == f"step{best['step']:07d}" and (run / "checkpoints" / tag).is_dir()  # kept, whatever keep says
    # the step-4 figures, recomputed here from the final weights one clip at a time: its answer tokens' mean
    # loss, its mel head's loss against its targets, and whether its most likely choice is the answer
    from stages.train.batch import read_samples
    from stages.train.bundle import load_bundle
    from stages.train.heads import expert_loss
    from stages.train.likelihood import pick_choice

    model = load_bundle(run / "final")
    lm, mel, right = [], [], []
    with torch.no_grad():
        for sample in read_samples(b, ["mel"]):
            batch = model.batch([sample])
            out = model(batch)
            logits, labels = out.logits[0, :-1], batch.labels[0, 1:]
            keep = labels != -100
            lm.append(float(torch.nn.functional.cross_entropy(logits[keep], labels[keep])))
            mel.append(float(expert_loss("spectrum", out.slots["mel"], out.clips["mel"], batch.targets["mel"])))
            right.append(pick_choice(model, sample.wave, sample.question, sample.choices)[0] == sample.answer)
    assert val[-1]["val/held/lm"] == pytest.approx(np.mean(lm), rel=1e-5)
    assert val[-1]["val/held/mel"] == pytest.approx(np.mean(mel), rel=1e-5)
    assert val[-1]["val/held/accuracy"] == np.mean(right)
    assert val[-1]["val/held/loss"] == pytest.approx(np.mean(lm) + np.mean(mel), rel=1e-5)  # λ = w = 1


@pytest.mark.slow
def test_a_mixture_trains_on_two_ranks_in_its_shares_and_resumes_exactly(two_corpora, tmp_path):
    """3:1, A with mel + pitch and B with mel only, 2 DeepSpeed ranks; then the same run killed (SIGKILL to every
    process, as a node failure) after its step-4 checkpoint and resumed: the same batches and losses, step for
    step, the killed run's rows after its checkpoint dropped and redone. (One corpus, one process, stopped and
    resumed: tests/stages/train/test_resume_in_process.py, in the fast lane.)"""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.helpers import subprocess_env

    a, b = two_corpora
    deepspeed = Path(sys.executable).with_name("deepspeed")
    coat = Path(sys.executable).with_name("coat-pipe")
    mixture = ["--corpus", f"a={a}:3", "--corpus", f"b={b}:1"]
    args = [str(deepspeed), "--num_gpus", "2", "--no_python", str(coat), "train", "--backbone", "tiny-qwen2-audio",
            *mixture, "--think-tokens", "4", "--batch-size", "2", "--workers", "1", "--steps", "12",
            "--save-every", "4", "--lr", "2e-3"]  # fmt: skip
    env = subprocess_env(DS_ACCELERATOR="cpu", COLUMNS="200")
    done = subprocess.run(
        [*args, "--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    shares = rows[-1]["share/a"], rows[-1]["share/b"]
    assert abs(shares[0] - 0.75) < 3 * np.sqrt(0.75 * 0.25 / 12) and shares[0] + shares[1] == pytest.approx(1)
    logs = [json.loads(line) for line in (tmp_path / "whole" / "batches-rank0.jsonl").read_text().splitlines()]
    assert {row["corpus"] for row in logs} == {"a", "b"} and rows[-1]["no_targets/pitch"] > 0

    cut = tmp_path / "cut"
    proc = subprocess.Popen([*args, "--out", str(cut)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    while not (cut / "checkpoints" / "latest").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run([*args, "--out", str(cut), "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        name = f"batches-rank{rank}.jsonl"
        assert (cut / name).read_text() == (tmp_path / "whole" / name).read_text()
    resumed = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == list(range(1, 13))
    for got, want in zip(resumed, rows):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4, abs=1e-5), got["step"]
        assert got["share/a"] == want["share/a"]
