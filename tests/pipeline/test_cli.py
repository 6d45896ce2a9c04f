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


def _commands() -> dict[str, object]:
    """Every command, by its path ("" is the program itself)."""
    import typer.main

    from pipeline.cli import app

    def walk(command, path: tuple[str, ...] = ()) -> dict[str, object]:
        found = {" ".join(path): command}
        for name, sub in getattr(command, "commands", {}).items():
            found.update(walk(sub, (*path, name)))
        return found

    return walk(typer.main.get_command(app))


def _options_by_command() -> dict[str, list[str]]:
    """Every command's visible options, by its path."""
    return {
        path: sorted(o for p in command.params if not p.hidden for o in (*p.opts, *p.secondary_opts))
        for path, command in _commands().items()
    }


def test_every_command_keeps_its_options():
    """The commands and options users' scripts call: tests/pipeline/cli_options.json was written from the CLI
    before the lab and the benchmarks moved out of the stages (issue 28); a change to it is a decision."""
    import json
    from pathlib import Path

    kept = json.loads((Path(__file__).parent / "cli_options.json").read_text())
    assert _options_by_command() == kept


def test_help_reads_well_at_80_columns(monkeypatch):
    """No `<bool>` beside a flag, no `{corpus}` in a usage line, one sentence per command in the list,
    and no word cut to `…` (every `…` in the output is one the help text itself holds)."""
    monkeypatch.setenv("COLUMNS", "80")
    for path, command in _commands().items():
        text = cli(*path.split(), "--help").output
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "<bool>" not in text and "{" not in usage, (path, usage)
        if not hasattr(command, "commands"):  # a group lists its commands' summaries instead
            written = (command.help or "").count("…") + sum((p.help or "").count("…") for p in command.params)
            assert text.count("…") == written, path
    listing = " ".join(re.sub("[│╭╮╰╯─]", " ", cli("--help").output).split())
    assert "twin The pretrained tiny Qwen2-Audio twin the quickstart's runs start from" in listing
    assert "Every weight of the random twin" not in listing  # its second sentence stays in `twin --help`
