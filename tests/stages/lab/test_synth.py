import json

import numpy as np

from stages.lab.synth import ANSWERS, PITCH_LEVELS, QUESTION_TYPES, make_clip, note_name
from store_schema.corpus import iter_tar_samples, read_corpus, read_tar_keys
from tests.helpers import cli


def test_same_seed_same_bytes_whatever_the_shard_size(tmp_path):
    cli("synth", "--out", tmp_path / "a", "--clips", 7, "--shard-size", 3, "--seed", 5)
    cli("synth", "--out", tmp_path / "b", "--clips", 7, "--shard-size", 7, "--seed", 5)
    cli("synth", "--out", tmp_path / "c", "--clips", 7, "--shard-size", 3, "--seed", 6)
    a, b, c = (read_corpus(tmp_path / n) for n in "abc")
    assert [s.samples for s in a.shards] == [3, 3, 1] and [s.samples for s in b.shards] == [7]
    flac = {
        n: [s["flac"] for sh in x.shards for s in iter_tar_samples(x.tar_path(sh))] for n, x in zip("abc", (a, b, c))
    }
    assert flac["a"] == flac["b"] and flac["a"] != flac["c"]
    # The same command into a fresh folder: the tars byte for byte, corpus.json but for its time stamp.
    cli("synth", "--out", tmp_path / "a2", "--clips", 7, "--shard-size", 3, "--seed", 5)
    tars = sorted(p.name for p in (tmp_path / "a").glob("*.tar"))
    assert len(tars) == 3 and tars == sorted(p.name for p in (tmp_path / "a2").glob("*.tar"))
    for name in tars:
        first, again = (tmp_path / "a" / name).read_bytes(), (tmp_path / "a2" / name).read_bytes()
        assert first == again, f"{name} differs between two runs of the same synth command"
    first, again = (json.loads((tmp_path / n / "corpus.json").read_text()) for n in ("a", "a2"))
    assert first.pop("created_at") and again.pop("created_at") and first == again


def test_samples_follow_the_corpus_contract(synth_corpus):
    corpus = read_corpus(synth_corpus)
    assert corpus.sample_rate == 16000 and corpus.samples == 18 and len(corpus.shards) == 3
    for shard in corpus.shards:
        samples = list(iter_tar_samples(corpus.tar_path(shard)))
        assert [s["__key__"] for s in samples] == read_tar_keys(corpus.tar_path(shard))
        for sample in samples:
            assert "." not in sample["__key__"] and "/" not in sample["__key__"]
            meta = json.loads(sample["json"])
            user, assistant = meta["messages"]
            assert user["role"] == "user" and assistant["role"] == "assistant"
            assert assistant["content"] == meta["answer"] and meta["task"] in QUESTION_TYPES
            assert 1.0 <= meta["duration"] <= 8.0


def test_answers_are_what_the_generator_made():
    for index in range(120):
        clip = make_clip(1, index)
        events = clip.events
        assert clip.answer in ANSWERS[clip.task]  # the answer sets the quickstart's report checks against
        assert events and all(0 <= e.start < e.end <= clip.seconds + 1e-6 for e in events)
        if clip.task == "pitch_level":
            lo, hi = PITCH_LEVELS[clip.answer]
            assert lo <= events[0].f0 <= hi
        elif clip.task == "pitch_direction":
            assert (events[0].f1 > events[0].f0) == (clip.answer == "rising")
        elif clip.task == "count_events":
            assert ["zero", "one", "two", "three", "four", "five"][len(events)] == clip.answer
        elif clip.task == "note_name":
            assert note_name(events[0].f0) == clip.answer
        elif clip.task == "has_noise":
            assert any(e.kind == "noise" for e in events) == (clip.answer == "yes")
        elif clip.task == "louder_half":
            half = clip.seconds / 2
            n = len(clip.wave) // 2
            rms = [np.sqrt(np.mean(clip.wave[:n] ** 2)), np.sqrt(np.mean(clip.wave[n:] ** 2))]
            assert (rms[0] > rms[1]) == (clip.answer == "first")
            assert all((e.end <= half) or (e.start >= half) for e in events)
    assert {make_clip(1, i).task for i in range(6)} == set(QUESTION_TYPES) == set(ANSWERS)


def test_a_subset_of_question_types_is_asked_in_turn_and_recorded_in_the_recipe(tmp_path):
    asked = "louder_half,pitch_level"
    result = cli("synth", "--out", tmp_path / "sub", "--clips", 4, "--seed", 2, "--tasks", asked)
    assert result.exit_code == 0, result.output
    corpus = read_corpus(tmp_path / "sub")
    metas = [json.loads(s["json"]) for sh in corpus.shards for s in iter_tar_samples(corpus.tar_path(sh))]
    assert [m["task"] for m in metas] == ["louder_half", "pitch_level", "louder_half", "pitch_level"]
    assert corpus.created_by.endswith(f"--tasks {asked}")
    assert make_clip(2, 1, tasks=("louder_half", "pitch_level")).answer == metas[1]["answer"]
    refused = cli("synth", "--out", tmp_path / "bad", "--clips", 4, "--tasks", "pitch_level,loudness", expect=2)
    assert "each once, from" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "bad").exists()
