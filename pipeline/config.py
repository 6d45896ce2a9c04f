"""Typed configs: a pydantic model, filled from a YAML file then CLI flags, written in full into every output."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.errors import UserError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def load_config(model: type[ConfigT], yaml_path: Path | None, overrides: dict[str, Any]) -> ConfigT:
    """YAML values, then every override that is not None. Unknown keys and wrong types are errors."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        if not yaml_path.is_file():
            raise UserError(f"config file {yaml_path} does not exist")
        try:
            loaded = yaml.safe_load(yaml_path.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{yaml_path}: not valid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{yaml_path}: expected a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):  # nested settings merge one level
            values[key] = {**values[key], **{k: v for k, v in value.items() if v is not None}}
        elif isinstance(value, dict):
            values[key] = {k: v for k, v in value.items() if v is not None}
        elif value is not None:
            values[key] = value
    try:
        return model.model_validate(values)
    except ValidationError as e:
        where = f" in {yaml_path}" if yaml_path else ""
        lines = [f"  {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise UserError(f"invalid {model.__name__} settings{where}:\n" + "\n".join(lines)) from None


def config_dict(config: BaseModel) -> dict[str, Any]:
    """The config as plain JSON/YAML values (paths as strings)."""
    return config.model_dump(mode="json")


def write_config(config: BaseModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_dict(config), sort_keys=False))


def parse_assignments(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """`--set mel.n_mels=64` pairs -> {"mel": {"n_mels": 64}}; values are parsed as YAML scalars."""
    options: dict[str, dict[str, Any]] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        owner, dot, key = name.partition(".")
        if not sep or not dot or not owner or not key:
            raise UserError(f"--set {item!r}: expected EXPERT.OPTION=VALUE, e.g. --set mel.n_mels=64")
        options.setdefault(owner, {})[key] = yaml.safe_load(value)
    return options
