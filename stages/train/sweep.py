"""A sweep file: several runs that the same ranks train one after another, in one launch.

    # arms.yaml: one entry per run; `name` is its folder under --out, every other key a TrainConfig
    # setting that wins over the command's own (--config, --set, flags)
    - {name: coat-seed0, seed: 0}
    - {name: base-seed0, seed: 0, model: {no_think: true}}
    - {name: control-seed0, seed: 0, model: {distill_weight: 0.0}}

    bash launch/train.sh --config common.yaml --corpus data/train --out runs --sweep arms.yaml

Each run is exactly the `coat-pipe train` it describes (its own run directory, config.yaml, seed,
checkpoints and final/ bundle); only the launcher's start, the ranks' imports and the process group are
shared, which on small models is a good part of a run's time. A stop signal ends the sweep after the
current run's checkpoint; the same command with --resume (launch/train.sh always adds it) goes on from
there, finished runs resuming at their last step and so redoing nothing.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from stages.config_files import load_config, load_yaml, merge_settings
from stages.train.config import TrainConfig
from store_schema.errors import UserError

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # one folder under --out, never a path


def sweep_configs(path: Path, config: Path | None, settings: dict[str, Any]) -> list[TrainConfig]:
    """The sweep's runs, every one checked before any trains: the command's settings (`config`, then
    `settings` from its flags, whose `out` is the sweep's folder), then the entry's, with out = OUT/name."""
    try:
        entries = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{path}: not a readable sweep file ({err})") from None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: a sweep is a non-empty YAML list of runs, each a mapping with a name")
    out = Path(settings["out"])
    runs, seen = [], set()
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise UserError(f"{path}: entry {number} is not a mapping with a name")
        entry = dict(entry)
        name = entry.pop("name")
        if not RUN_NAME.match(name):
            raise UserError(f"{path}: entry {number}: name {name!r} must be a plain folder name")
        if name in seen:
            raise UserError(f"{path}: entry {number} repeats the name {name!r}")
        if "out" in entry:
            raise UserError(f"{path}: entry {number} sets out; a run's folder is --out/NAME")
        seen.add(name)
        merged = merge_settings(copy.deepcopy(settings), entry) | {"out": out / name}
        try:
            runs.append(load_config(TrainConfig, config, merged))
        except UserError as err:
            raise UserError(f"{path}: entry {number} ({name}): {err}") from None
    return runs
