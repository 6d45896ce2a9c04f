"""The backbone registry: a plain dict from name to backbone, `tiny-` twins built offline on first use."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from stages.train.backbones.af3 import AudioFlamingo3Backbone
from stages.train.backbones.base import Backbone
from stages.train.backbones.qwen2_5_omni import Qwen25OmniBackbone
from stages.train.backbones.qwen2_audio import Qwen2AudioBackbone
from store_schema.errors import UserError

BACKBONES: dict[str, Backbone] = {
    "qwen2-audio": Qwen2AudioBackbone(),
    "qwen2.5-omni": Qwen25OmniBackbone(),
    "af3": AudioFlamingo3Backbone(),
}
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
