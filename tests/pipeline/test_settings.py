"""Settings from YAML, flags and `--set`: how they merge, and the quickstart's overrides of TrainConfig."""

import pytest
import yaml

from pipeline.quickstart_setup import TRAIN_DEFAULTS, QuickstartConfig
from stages.config_files import load_config, parse_assignments
from store_schema.errors import UserError
from tests.helpers import cli


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
