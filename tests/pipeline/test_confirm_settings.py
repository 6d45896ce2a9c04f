"""The confirmatory design's settings that shape its corpora: clips of one length (`clip_seconds`) that fit
the twin's window."""

import pytest

from pipeline.confirm import Confirm
from pipeline.quickstart_setup import ConfirmConfig
from stages.lab.pretrained_twin import TwinRecipe
from stages.lab.synth_benchmark import load_synth
from store_schema.corpus import read_corpus

SHORT = {"window_s": 4, "twin": TwinRecipe(window_s=4, longest_clip_s=4.0), "clip_seconds": 4.0}


def test_every_clip_of_every_split_lasts_clip_seconds(tmp_path):
    cfg = ConfirmConfig(**SHORT, train_clips=12, validation_clips=12, heldout_clips=12)
    confirm = Confirm(tmp_path, cfg)
    confirm.synth()
    for folder, clips, seed, _ in confirm.splits():
        items = load_synth(folder)
        assert {round(s.seconds, 3) for s in read_corpus(folder).shards} == {4 * 4.0}  # 4 clips of 4 s a shard
        assert len(items) == clips and {i.groups["task"] for i in items} == set(cfg.tasks)
        assert read_corpus(folder).created_by.endswith(
            f"--seed {seed} --shard-size 4 --name {folder.name} --min-seconds 4 --max-seconds 4 "
            "--tasks pitch_level,pitch_direction,louder_half"
        )
    confirm.synth()  # made already: found, not made again


def test_clips_longer_than_the_window_are_refused():
    with pytest.raises(ValueError, match="do not fit the twin's 4 s window"):
        ConfirmConfig(window_s=4, twin=TwinRecipe(window_s=4, longest_clip_s=4.0))  # synth's 1-8 s
    with pytest.raises(ValueError, match="do not fit"):
        ConfirmConfig(clip_seconds=12.0)
    assert ConfirmConfig(clip_seconds=4.0).clip_seconds == 4.0  # the 10 s twin takes them too


def test_the_designs_differ_only_where_their_registrations_say():
    """`--design fourth` is the fourth registration's defaults; the sixth changes the clips, the window, the
    twin's clips, the trained encoder and the steps, nothing else."""
    from pipeline.quickstart_setup import DESIGNS
    from stages.config_files import config_dict
    from stages.train.config import flatten_settings

    fourth, sixth = (flatten_settings(config_dict(DESIGNS[name]())) for name in ("fourth", "sixth"))
    assert fourth["train.steps"] == 400 and fourth["train.model.train_audio_encoder"] == "lora"
    assert fourth["clip_seconds"] is None and fourth["window_s"] == 10 and fourth["twin.window_s"] == 10
    changed = {k: v for k, v in sixth.items() if fourth.get(k) != v}
    assert changed == {
        "clip_seconds": 4.0,
        "window_s": 4,
        "twin.window_s": 4,
        "twin.longest_clip_s": 4.0,
        "train.steps": 500,
        "train.model.train_audio_encoder": "full",
    }


def test_the_seventh_is_the_sixth_from_a_longer_pretrained_twin():
    """The seventh registration changes the twin's recipe only (4x the steps on 4x the clips): every run's
    training, the splits and the arms are the sixth's, and the twin is a different cached folder."""
    from pipeline.cli.quickstart import DEFAULT_DESIGN
    from pipeline.quickstart_setup import DESIGNS
    from stages.config_files import config_dict
    from stages.train.config import flatten_settings

    sixth, seventh = (DESIGNS[name]() for name in ("sixth", "seventh"))
    flat6, flat7 = (flatten_settings(config_dict(cfg)) for cfg in (sixth, seventh))
    assert {k: v for k, v in flat7.items() if flat6.get(k) != v} == {"twin.steps": 1200, "twin.train_clips": 4800}
    assert seventh.arms == sixth.arms and seventh.run_names() == sixth.run_names()
    assert seventh.twin.key() != sixth.twin.key()
    assert DEFAULT_DESIGN == "seventh"  # `--confirm` alone runs the latest registration


def test_a_folder_of_another_design_is_refused_naming_the_design_that_resumes_it(tmp_path):
    """`--confirm`'s default moves to each new registration, so a folder made by the old default is refused
    (its runs are another design's) with the --design that made it; a design's own folder passes."""
    from pipeline.quickstart_setup import DESIGNS, design_of
    from stages.config_files import config_dict
    from store_schema.errors import UserError

    for name, cls in DESIGNS.items():
        assert design_of(config_dict(cls())) == name
    assert design_of(config_dict(DESIGNS["sixth"](seeds=3, train_clips=600))) == "sixth"  # sizes are not design
    Confirm(tmp_path, DESIGNS["sixth"]()).check_settings()
    with pytest.raises(UserError, match=r"twin.steps: 300 → 1200.*resume it with --design sixth, the design"):
        Confirm(tmp_path, DESIGNS["seventh"]()).check_settings()
    Confirm(tmp_path, DESIGNS["sixth"]()).check_settings()  # its own design still resumes it
    custom = tmp_path / "custom"
    Confirm(custom, DESIGNS["sixth"](train={"steps": 50})).check_settings()  # no design's defaults: no hint
    with pytest.raises(UserError) as refused:
        Confirm(custom, DESIGNS["seventh"]()).check_settings()
    assert "--design" not in str(refused.value)
