"""The backbone registry: a mapping from name to backbone, `tiny-` twins built offline on first use."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.file_manifest import cached_folder
from stages.train.backbones.base import Backbone
from stages.train.tiny_text import text_digest
from store_schema.errors import UserError

if TYPE_CHECKING:
    from stages.train.config import ModelConfig

# The published configs of the real backbones (and their tokenizers' sizes), read by --plan offline.
PUBLISHED = Path(__file__).parent / "published"

# name -> (module, class). A backbone's module imports its model classes from transformers, seconds of
# imports per family, so a process imports only the families it asks for (every training rank pays it).
FAMILIES = {
    "qwen2-audio": ("stages.train.backbones.qwen2_audio", "Qwen2AudioBackbone"),
    "qwen2.5-omni": ("stages.train.backbones.qwen2_5_omni", "Qwen25OmniBackbone"),
    "af3": ("stages.train.backbones.af3", "AudioFlamingo3Backbone"),
}


class BackboneRegistry(Mapping[str, Backbone]):
    """Reads like a dict of the three backbones; each is imported and made on its first lookup."""

    def __init__(self) -> None:
        self._made: dict[str, Backbone] = {}

    def __getitem__(self, name: str) -> Backbone:
        if name not in self._made:
            module, cls = FAMILIES[name]  # KeyError for an unknown name, as a dict gives
            self._made[name] = getattr(importlib.import_module(module), cls)()
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(FAMILIES)

    def __len__(self) -> int:
        return len(FAMILIES)


BACKBONES = BackboneRegistry()
TINY_PREFIX = "tiny-"
TINY_VERSION = "3"  # bump when a twin's config changes, so cached twins are rebuilt


def tiny_cache() -> Path:
    return Path(os.environ.get("COAT_PIPE_CACHE", Path.home() / ".cache" / "coat-pipe")) / "tiny"


def resolve_backbone(name: str, model_path: str | None = None) -> tuple[Backbone, str]:
    """(backbone, where its weights are): `model_path`, else the hub id, else the tiny twin's folder."""
    family = name.removeprefix(TINY_PREFIX)
    if family not in BACKBONES:
        known = ", ".join([*BACKBONES, *(TINY_PREFIX + n for n in BACKBONES)])
        raise UserError(f"unknown backbone {name!r}; known: {known}")
    backbone = BACKBONES[family]
    if model_path is not None:
        return backbone, model_path
    if not name.startswith(TINY_PREFIX):
        return backbone, backbone.hub_id
    # built once, atomically (concurrent ranks never see half a twin), and verified by content on every use
    folder = cached_folder(tiny_cache() / f"{name}-v{TINY_VERSION}-{text_digest()}", backbone.build_tiny)
    return backbone, str(folder)


__all__ = ["BACKBONES", "Backbone", "resolve_backbone"]


def backbone_config(model: ModelConfig) -> tuple[Any, str, int | None]:
    """(the backbone's config object, where it came from, the tokenizer's size where known)."""
    backbone, source = resolve_backbone(str(model.backbone), model.model_path)  # builds a tiny twin offline
    config_class = backbone.model_class.config_class
    if model.model_path is None and not model.is_tiny:
        values = json.loads((PUBLISHED / f"{backbone.name}.json").read_text())
        tokenizer_size = values.pop("tokenizer_size", None)
        where = values.pop("_source")
        values.pop("model_type")
        return config_class(**values), where, tokenizer_size
    folder = Path(source)
    if not (folder / "config.json").is_file():
        raise UserError(f"--plan reads {folder}/config.json, which does not exist: pass a local --model-path")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder)) if (folder / "tokenizer_config.json").is_file() else None
    return config_class.from_pretrained(str(folder)), str(folder / "config.json"), len(tokenizer) if tokenizer else None
