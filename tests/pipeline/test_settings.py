"""Settings from YAML, flags and `--set`: how they merge, and the quickstart's overrides of TrainConfig."""

import pytest
import yaml

from pipeline.quickstart_setup import TRAIN_DEFAULTS, QuickstartConfig
from stages.config_files import load_config, parse_assignments
from store_schema.errors import UserError
from tests.helpers import cli
from tests.refusals import error_line, tree_state


def test_set_pairs_nest_on_their_dots_and_parse_yaml_scalars():
    parsed = parse_assignments(["warmup_steps=20", "model.lora_alpha=64", "model.no_think=true", "lr=0.001"])
    assert parsed == {"warmup_steps": 20, "model": {"lora_alpha": 64, "no_think": True}, "lr": 0.001}
    with pytest.raises(UserError, match="expected EXPERT.OPTION=VALUE"):
        parse_assignments(["n_mels=64"], depth=2, shape="EXPERT.OPTION=VALUE")
    with pytest.raises(UserError, match="'model.=3'"):
        parse_assignments(["model.=3"])


def test_quickstart_train_settings_override_one_key_and_keep_the_rest(tmp_path):
    config = tmp_path / "q.yaml"
    config.write_text(yaml.safe_dump({"seeds": 1, "train": {"lr": 1e-3, "model": {"lora_rank": 4}}}))
    cfg = load_config(QuickstartConfig, config, {"train": {"steps": 7}})
    assert cfg.train["lr"] == 1e-3 and cfg.train["steps"] == 7 and cfg.train["model"]["lora_rank"] == 4
    assert cfg.train["model"]["think_tokens"] == TRAIN_DEFAULTS["model"]["think_tokens"]  # untouched default
    assert cfg.training.schedule == "joint" and cfg.training.model.lora_rank == 4
    assert QuickstartConfig().training.steps == 400  # the defaults themselves are unchanged


def test_quickstart_refuses_a_train_setting_that_trainconfig_does_not_have(tmp_path):
    config = tmp_path / "q.yaml"
    config.write_text(yaml.safe_dump({"train": {"lrr": 1e-3}}))
    with pytest.raises(UserError, match="lrr"):
        load_config(QuickstartConfig, config, {})


@pytest.mark.slow
def test_train_set_reaches_the_run_config_and_flags_win(extracted_corpus, tmp_path):
    run = tmp_path / "run"
    cli(
        "train",
        "--backbone",
        "tiny-qwen2-audio",
        "--corpus",
        extracted_corpus,
        "--out",
        run,
        "--steps",
        1,
        "--workers",
        0,
        "--batch-size",
        2,
        "--set",
        "warmup_steps=3",
        "--set",
        "model.lora_alpha=8",
        "--set",
        "steps=99",  # the --steps flag wins
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["warmup_steps"] == 3 and saved["model"]["lora_alpha"] == 8 and saved["steps"] == 1


def test_train_set_with_an_unknown_key_is_one_clear_error(extracted_corpus, tmp_path):
    result = cli(
        "train", "--corpus", extracted_corpus, "--out", tmp_path / "run", "--set", "model.lora_alfa=8", expect=2
    )
    assert "lora_alfa" in result.output and "Traceback" not in result.output


def _bomb(levels: int, flow: bool = False) -> str:
    """A "billion laughs": each level an anchored list of nine aliases of the level before (9**levels values
    once expanded). Six levels keep a planted regression to half a million values, not an exhausted machine."""
    names = [f"l{i}" for i in range(levels + 1)]
    rows = [f"&{names[0]} [{', '.join(['lol'] * 9)}]"]
    rows += [f"&{names[i]} [{', '.join([f'*{names[i - 1]}'] * 9)}]" for i in range(1, levels + 1)]
    return f"[{', '.join(rows)}]" if flow else "".join(f"{n}: {r}\n" for n, r in zip(names, rows, strict=True))


def test_yaml_aliases_are_refused_in_every_settings_file_and_value(extracted_corpus, tmp_path):
    """A config file, a sweep, an expert option: each is one line naming the alias, nothing written."""
    from stages.evaluate.prompts import prompt_format

    config, sweep, run = tmp_path / "bomb.yaml", tmp_path / "sweep.yaml", tmp_path / "run"
    config.write_text(_bomb(6))
    sweep.write_text(f"- name: a\n  model: {{expert_weights: {_bomb(6, flow=True)}}}\n")
    train = ("train", "--backbone", "tiny-qwen2-audio", "--corpus", extracted_corpus, "--out", run)
    error_line(cli(*train, "--config", config, expect=2), 2, config, "aliases", "*l0")
    error_line(cli(*train, "--sweep", sweep, expect=2), 2, sweep, "aliases")
    corpus_before = tree_state(extracted_corpus)
    extract = ("extract", "--corpus", extracted_corpus, "--expert", "mel", "--no-progress")
    error_line(cli(*extract, "--set", f"mel.n_mels={_bomb(6, flow=True)}", expect=2), 2, "mel.n_mels", "aliases")
    assert not run.exists() and tree_state(extracted_corpus) == corpus_before
    with pytest.raises(UserError, match="not a readable YAML prompt file .YAML aliases"):
        prompt_format(file=str(config))


def test_what_coat_pipe_writes_it_reads_back_even_where_values_are_shared():
    """The quickstart's sweep gives every seed of an arm the same settings object; written with yaml's own
    dumper that became an anchor and aliases, which load_yaml refuses (the default quickstart failed so)."""
    from pipeline.quickstart_setup import ARMS
    from stages.config_files import dump_yaml, load_yaml

    todo = [{"name": f"{arm}-seed{seed}", "seed": seed, **ARMS[arm]} for arm in ARMS for seed in range(3)]
    text = dump_yaml(todo)
    assert "&" not in text and "*" not in text and load_yaml(text) == todo
