"""The CLI teaches (--help with examples) and answers a user's mistake with one line and exit code 2."""

import re

import pytest

from tests.helpers import cli

COMMANDS = [
    ["quickstart"],
    ["synth"],
    ["shard"],
    ["extract"],
    ["store", "check"],
    ["store", "info"],
    ["store", "stats"],
    ["bench", "extract"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself_with_an_example(command):
    text = cli(*command, "--help").output
    assert "Example" in text and "coat-pipe " + " ".join(command) in text


def test_top_level_help_lists_the_stages():
    text = cli("--help").output
    for name in ("quickstart", "synth", "shard", "extract", "store", "bench"):
        assert name in text


def test_train_help_shows_every_default():
    boxed = cli("train", "--help").output  # rich draws the options in a box and folds long help lines
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", boxed).split())
    for shown in (
        "[default: 200]",
        "[default: 4]",
        "[default: auto]",
        "[default: sdpa]",
        "[default: 3]",
        "[default: tensorboard]",
        "[default: 16]",
        "on for the real backbones",
        "Required: qwen2-audio",
    ):
        assert shown in text, shown  # fmt: skip


def test_a_missing_backbone_is_refused_before_the_store_is_read(tmp_path):
    result = cli("train", "--corpus", tmp_path / "no-such-corpus", "--out", tmp_path / "r", expect=2)
    assert "no backbone given" in result.output and "no corpus.json" not in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["extract", "--corpus", "{tmp}", "--expert", "mel"], "no corpus.json in"),
        (["extract", "--corpus", "{corpus}", "--expert", "wav2vec9"], "unknown expert 'wav2vec9'"),
        (["extract", "--corpus", "{corpus}", "--expert", "mel", "--set", "mel.nope=1"], "has no option nope"),
        (["extract", "--corpus", "{corpus}", "--expert", "mel", "--set", "n_mels=1"], "expected EXPERT.OPTION=VALUE"),
        (
            ["extract", "--corpus", "{corpus}", "--expert", "mel", "--shard-index", "3", "--num-shards", "2"],
            "shard_index must lie in [0, 2)",
        ),
        (["extract", "--corpus", "{corpus}", "--config", "{tmp}/cfg.yaml"], "batch_size: Extra inputs"),
        (["store", "check", "{tmp}"], "no corpus.json"),
        (["store", "stats", "{corpus}"], "no expert groups found"),
        (["store", "stats", "{corpus}", "--expert", "mel"], "cannot compute mel stats"),
        (["bench", "codecs", "{corpus}"], "no expert groups to measure"),
        (["shard", "--out", "{tmp}/o"], "exactly one of --manifest"),
        (["shard", "--manifest", "{tmp}/none.jsonl", "--out", "{tmp}/o"], "does not exist"),
        (["synth", "--out", "{corpus}", "--clips", "5"], "already holds another corpus"),
        (["train", "--corpus", "{corpus}", "--out", "{tmp}/r"], "no backbone given: choose one with --backbone"),
        (["train", "--corpus", "{corpus}", "--out", "{tmp}/r", "--backbone", "qwen3"], "unknown backbone 'qwen3'"),
        (["train", "--plan", "--backbone", "af3", "--plan-gpu-memory", "lots"], "expected a size such as 80GiB"),
    ],
)
def test_mistakes_get_one_clear_line_and_exit_2(args, message, synth_corpus, tmp_path):
    (tmp_path / "cfg.yaml").write_text("experts: [mel]\nbatch_size: 3\n")
    filled = [a.format(tmp=tmp_path, corpus=synth_corpus) for a in args]
    result = cli(*filled, expect=2)
    text = " ".join(result.output.split())
    assert "error:" in text and message in text, text
    assert "Traceback" not in result.output
