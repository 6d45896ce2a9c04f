from pathlib import Path

import pytest

from stages.config_files import load_config
from stages.extract.config import ExtractConfig, worker_slice
from store_schema.errors import UserError


def _config(**kw) -> ExtractConfig:
    return ExtractConfig(corpus=Path("c"), experts="mel,pitch", **kw)


def test_comma_list_and_yaml_then_flags(tmp_path):
    (tmp_path / "x.yaml").write_text(
        "corpus: a\nexperts: [mel]\nbatch_seconds: 30\nexpert_options: {mel: {n_mels: 64}}\n"
    )
    cfg = load_config(ExtractConfig, tmp_path / "x.yaml", {"batch_seconds": 60.0, "device": None})
    assert cfg.experts == ["mel"] and cfg.batch_seconds == 60.0 and cfg.expert_options == {"mel": {"n_mels": 64}}
    assert _config().experts == ["mel", "pitch"]
    with pytest.raises(UserError, match="dtype"):
        load_config(ExtractConfig, None, {"corpus": "a", "experts": "mel", "dtype": "int8"})


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, {}, (0, 1)),
        ({}, {"shard_index": 2, "num_shards": 5}, (2, 5)),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, {}, (3, 4)),
        ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "2"}, {}, (3, 4)),
        ({"RANK": "1", "WORLD_SIZE": "2"}, {}, (1, 2)),
        ({"RANK": "1", "WORLD_SIZE": "2"}, {"shard_index": 0, "num_shards": 1}, (0, 1)),  # flags win
    ],
)
def test_worker_slice(monkeypatch, env, flags, expected):
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert worker_slice(_config(**flags)) == expected


def test_slices_cover_every_shard_once(synth_corpus, tmp_path):
    from store_schema.corpus import read_corpus
    from tests.helpers import cli, copy_corpus

    corpus = copy_corpus(synth_corpus, tmp_path / "c")
    for index in range(2):
        cli(
            "extract",
            "--corpus",
            corpus,
            "--expert",
            "mel",
            "--shard-index",
            index,
            "--num-shards",
            2,
            "--workers",
            0,
            "--no-progress",
        )
        assert (corpus / "stats" / "mel.json").exists() == (index == 1)  # written once the last shard is in
    assert len(list(corpus.glob("*.zarr/mel/zarr.json"))) == len(read_corpus(corpus).shards)
    cli("store", "check", corpus)
