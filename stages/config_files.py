"""Typed configs: a pydantic model, filled from a YAML file then CLI flags, written in full into every output."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from store_schema.errors import UserError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class YamlAliasRefused(yaml.YAMLError):
    """A settings file used an alias; every caller's `except yaml.YAMLError` turns it into one line."""


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that stops at the first alias (`*name`, `<<: *name`): nine lines of nested aliases
    expand to a billion values (a "billion laughs"), and settings never need them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlAliasRefused(
                f"YAML aliases are not accepted in settings (*{event.anchor} on line {event.start_mark.line + 1}): "
                "write the value out"
            )
        return super().compose_node(parent, index)


class _NoAliasDumper(yaml.SafeDumper):
    """yaml.SafeDumper that writes a value shared by two keys out twice instead of as an anchor and an alias,
    so that what coat-pipe writes, `load_yaml` reads back."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: Any) -> str:
    """YAML for every settings file coat-pipe writes: keys in the order given, no aliases."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` for every settings file and value the user hands over, without aliases."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def load_config(model: type[ConfigT], yaml_path: Path | None, overrides: dict[str, Any]) -> ConfigT:
    """YAML values, then every override that is not None. Unknown keys and wrong types are errors."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        if not yaml_path.is_file():
            raise UserError(f"config file {yaml_path} does not exist")
        try:
            loaded = load_yaml(yaml_path.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{yaml_path}: not valid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{yaml_path}: expected a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded)
    merge_settings(values, overrides)
    try:
        return model.model_validate(values)
    except ValidationError as e:
        where = f" in {yaml_path}" if yaml_path else ""
        found = [_finding(err) for err in e.errors()]
        if len(found) == 1:  # the usual case: one line
            raise UserError(f"invalid {model.__name__} setting{where}: {found[0]}") from None
        raise UserError(f"invalid {model.__name__} settings{where}:\n" + "\n".join(f"  {f}" for f in found)) from None


def _finding(error: Any) -> str:
    """One pydantic error as `key: what`; a validator's own sentence stands alone, a missing key says how to give it."""
    key = ".".join(map(str, error["loc"]))
    if error["type"] == "value_error":
        return error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{key} is required (--{key.split('.')[-1].replace('_', '-')} or {key}: in the config file)"
    return f"{key}: {error['msg']}"


def merge_settings(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Put OVERRIDES into VALUES (in place, and returned): nested mappings merge key by key, None sets nothing."""
    for key, value in overrides.items():
        if isinstance(value, dict):
            held = values.get(key)
            values[key] = merge_settings(held if isinstance(held, dict) else {}, value)
        elif value is not None:
            values[key] = value
    return values


def config_dict(config: BaseModel) -> dict[str, Any]:
    """The config as plain JSON/YAML values (paths as strings)."""
    return config.model_dump(mode="json")


def write_config(config: BaseModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(config_dict(config)))


def parse_assignments(items: list[str] | None, depth: int | None = None, shape: str = "KEY=VALUE") -> dict[str, Any]:
    """`--set` pairs -> nested settings: `model.lora_rank=8` -> {"model": {"lora_rank": 8}}.

    Values are parsed as YAML scalars (8 an int, true a bool), then typed by the config; `depth`, if given, is the
    number of dotted parts every key must have, and `shape` says what was expected."""
    settings: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        parts = name.split(".")
        if not sep or not all(parts) or (depth is not None and len(parts) != depth):
            raise UserError(f"--set {item!r}: expected {shape}")
        node = settings
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part} is already set to a value")
        try:
            node[parts[-1]] = load_yaml(value)
        except yaml.YAMLError as e:
            raise UserError(f"--set {name}: {str(e).splitlines()[0]}") from None
    return settings
