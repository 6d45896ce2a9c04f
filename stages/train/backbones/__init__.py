"""The backbone registry: a mapping from name to backbone, `tiny-` twins built offline on first use."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from stages.train.backbones.base import Backbone
from store_schema.errors import UserError

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
    folder = tiny_cache() / f"{name}-v{TINY_VERSION}"
    if not (folder / "config.json").is_file():
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        backbone.build_tiny(tmp)
        try:
            os.rename(tmp, folder)  # atomic: concurrent ranks never see half a twin
        except OSError:  # another rank renamed its (identical) twin into place first
            shutil.rmtree(tmp, ignore_errors=True)
    return backbone, str(folder)


__all__ = ["BACKBONES", "Backbone", "resolve_backbone"]
