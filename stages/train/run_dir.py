"""The run directory: a fresh run only in an empty one, a resume only with the settings it was started with.

RUN/ holds config.yaml (the first steps' settings, never rewritten), ds_config.json, metrics.jsonl,
batches-rank*.jsonl, resumes.jsonl (what each resume changed), tensorboard/, checkpoints/ and final/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from stages.config_files import config_dict, load_yaml
from stages.train.checkpoint import LATEST
from stages.train.config import TrainConfig, settings_changes
from store_schema.errors import UserError

LAUNCHER_FILE = "hostfile"  # launch/train.sh writes the allocation's hostfile into the run before training


def check_run_dir(cfg: TrainConfig, ds_config: dict[str, Any]) -> dict[str, Any]:
    """Refuse to start where a run's record would be overwritten or mixed with another's.

    Returns the settings a resume changes that may change (steps, cadences, workers). Every rank calls
    this before any rank writes, so every rank stops on the same finding."""
    run = cfg.out
    if run.exists() and not run.is_dir():
        raise UserError(f"--out {run} is a file, not a run directory")
    # launch/train.sh writes the allocation's hostfile into the run before training starts
    held = sorted(p.name for p in run.iterdir() if p.name != LAUNCHER_FILE) if run.is_dir() else []
    if not held:
        return {}
    if not cfg.resume:
        raise UserError(
            f"{run} is not empty (holds {', '.join(held[:4])}); pass --resume to continue the run it holds, "
            "or choose another --out"
        )
    if not (run / "config.yaml").is_file():
        raise UserError(f"{run} holds files but no config.yaml: it is not a coat-pipe run; choose another --out")
    if (run / "final").exists() and not (run / "checkpoints" / LATEST).is_file():
        raise UserError(f"{run} holds a finished run (final/) whose checkpoints are gone; choose another --out")
    try:
        saved = load_yaml((run / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{run / 'config.yaml'}: not valid YAML ({e})") from None
    refused, allowed = settings_changes(saved if isinstance(saved, dict) else {}, config_dict(cfg))
    saved_ds = run / "ds_config.json"
    if saved_ds.is_file() and json.loads(saved_ds.read_text()) != ds_config:
        refused.append(f"the DeepSpeed settings (see {saved_ds})")
    if refused:
        raise UserError(
            f"{run} was trained with other settings; a resume must keep them ({'; '.join(refused)}). "
            "Only steps, save_every, log_every, num_workers, keep_checkpoints and report_to may change."
        )
    return allowed


def drop_rows_after(log: Path, last_step: int) -> None:
    """Keep the JSONL rows whose "step" is at most `last_step`."""
    if not log.is_file():
        return
    kept = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{log}: line {number} is not a log row with a step; the run's logs were edited") from None
        if step <= last_step:
            kept.append(line)
    log.write_text("".join(row + "\n" for row in kept))
