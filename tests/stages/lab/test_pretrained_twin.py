"""The pretrained twin: its task's answers, a full fine-tune that changes every part, the recipe's cache."""

import hashlib
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from stages.lab.pretrained_twin import TwinRecipe, describe, pretrained_twin, twin_folder
from stages.lab.synth import make_clip
from stages.train.backbones import BACKBONES
from tests.helpers import cli

SMALL = TwinRecipe(steps=12, train_clips=16, heldout_clips=4, warmup_steps=2)


def test_a_description_names_the_kinds_in_order_of_appearance_and_the_whole_seconds():
    for index in range(30):
        clip = make_clip(101, index)
        kinds, _, length = describe(clip).partition("; ")
        first_seen = []
        for event in sorted(clip.events, key=lambda e: e.start):
            if event.kind not in first_seen:
                first_seen.append(event.kind)
        assert kinds.split(", ") == first_seen
        assert length == f"{max(1, round(clip.seconds))} s"


def test_recipes_name_their_own_folders():
    assert twin_folder(SMALL) == twin_folder(TwinRecipe(**SMALL.model_dump()))
    assert twin_folder(SMALL) != twin_folder(SMALL.model_copy(update={"steps": 13}))


def test_a_short_window_twin_pretrains_on_clips_that_fit_it_and_old_recipes_keep_their_folders():
    """A 4 s window (clips of at most 4 s: the sixth registration's) needs pretraining clips of at most 4 s; a
    recipe that does not set the clip length keeps the folder name it had before the field existed."""
    from stages.lab.pretrained_twin import RECIPE_VERSION, describe_sample

    short = TwinRecipe(window_s=4, longest_clip_s=4.0)
    assert short.seconds_range == (1.0, 4.0)
    assert max(len(describe_sample(101, i, short.seconds_range).wave) for i in range(40)) <= 4 * 16000
    with pytest.raises(ValueError, match="exceed the 4 s window"):
        TwinRecipe(window_s=4)  # synth's 1-8 s clips would be cut by the window
    fields = {k: v for k, v in TwinRecipe().model_dump().items() if k != "longest_clip_s"}
    before = hashlib.sha256(json.dumps(fields | {"version": RECIPE_VERSION}, sort_keys=True).encode()).hexdigest()
    assert TwinRecipe().key() == before[:12] and short.key() != TwinRecipe(window_s=4, longest_clip_s=3.0).key()


def _weights(folder) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.mark.slow
def test_the_twin_is_fine_tuned_everywhere_scored_and_then_found_in_the_cache(tmp_path):
    folder = pretrained_twin(SMALL, progress=False)
    record = json.loads((folder / "twin.json").read_text())
    assert record["recipe"] == SMALL.model_dump() and record["heldout"]["clips"] == 4
    assert 0 <= record["heldout"]["exact"] <= record["heldout"]["kinds"] <= 1
    losses = record["losses"]
    assert len(losses) == 12 and sum(losses[-4:]) < sum(losses[:4])  # it learnt something in 12 steps
    random_twin = tmp_path / "random"
    BACKBONES["qwen2-audio"].build_tiny(random_twin, seed=SMALL.twin_seed, window_s=SMALL.window_s)
    before, after = _weights(random_twin), _weights(folder)
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    for part in ("audio_tower", "multi_modal_projector", "language_model"):  # encoder, projector, LM
        assert any(part in k for k in changed), part
    model, processor = BACKBONES["qwen2-audio"].load(folder)  # a model folder like any other
    assert len(processor.tokenizer) == model.get_input_embeddings().num_embeddings
    stamp = (folder / "twin.json").stat().st_mtime_ns
    assert pretrained_twin(SMALL, progress=False) == folder and (folder / "twin.json").stat().st_mtime_ns == stamp
    recipe_yaml = tmp_path / "twin.yaml"
    recipe_yaml.write_text(yaml.safe_dump(SMALL.model_dump()))
    shown = cli("twin", "--config", recipe_yaml).output  # the command finds the same twin, builds nothing
    assert str(folder) in shown and "held-out descriptions (4 clips)" in shown
    assert (folder / "twin.json").stat().st_mtime_ns == stamp
