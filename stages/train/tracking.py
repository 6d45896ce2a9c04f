"""Where a run's metrics go besides RUN/metrics.jsonl: TensorBoard (default), Weights & Biases, MLflow.

Each tracker logs exactly the rows metrics.jsonl holds (every numeric value, at its step), under the run's
name, group and tags. A resumed run continues the same tracker run: its ids are kept in RUN/tracking.json.
W&B and MLflow are optional extras (`pip install 'coat-pipe[wandb]'`, `'coat-pipe[mlflow]'`); they read
their usual settings from the environment (WANDB_MODE=offline, WANDB_PROJECT, MLFLOW_TRACKING_URI …).
Without MLFLOW_TRACKING_URI, MLflow writes a file store under the run directory (RUN/mlruns).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from stages.config_files import config_dict
from stages.train.config import TrainConfig
from store_schema.errors import UserError

IDS_FILE = "tracking.json"


def _numeric(row: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v) for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
    }


class Trackers:
    """The trackers `report_to` names, opened on rank 0 only."""

    def __init__(self, cfg: TrainConfig, run: Path) -> None:
        self.run = run
        self.ids: dict[str, str] = json.loads((run / IDS_FILE).read_text()) if (run / IDS_FILE).is_file() else {}
        name = cfg.run_name or run.name
        self._tensorboard = self._wandb = self._mlflow = None
        if "tensorboard" in cfg.report_to:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(run / "tensorboard"))
        if "wandb" in cfg.report_to:
            wandb = _optional("wandb", "wandb")
            self._wandb = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "coat-pipe"),
                name=name,
                group=cfg.run_group,
                tags=cfg.run_tags or None,
                config=config_dict(cfg),
                dir=str(run),
                id=self.ids.get("wandb") or uuid.uuid4().hex[:8],
                resume="allow",
            )
            self.ids["wandb"] = self._wandb.id
        if "mlflow" in cfg.report_to:
            mlflow = _optional("mlflow", "mlflow")
            if not os.environ.get("MLFLOW_TRACKING_URI"):  # no server named: a file store in the run, no database
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this opt-in
                mlflow.set_tracking_uri((run / "mlruns").resolve().as_uri())
            mlflow.set_experiment(cfg.run_group or "coat-pipe")
            tags = {"coat.tags": ",".join(cfg.run_tags), **({"coat.group": cfg.run_group} if cfg.run_group else {})}
            active = mlflow.start_run(run_id=self.ids.get("mlflow"), run_name=None if "mlflow" in self.ids else name)
            mlflow.set_tags(tags)
            if "mlflow" not in self.ids:
                mlflow.log_params({k: str(v)[:500] for k, v in _flat(config_dict(cfg)).items()})
            self._mlflow = mlflow
            self.ids["mlflow"] = active.info.run_id
        (run / IDS_FILE).write_text(json.dumps(self.ids))

    def log(self, row: dict[str, Any]) -> None:
        """One metrics.jsonl row, at its step."""
        step, values = int(row["step"]), _numeric(row)
        if self._tensorboard is not None:
            for key, value in values.items():
                self._tensorboard.add_scalar(f"train/{key}", value, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)
        if self._mlflow is not None:
            self._mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._mlflow is not None:
            self._mlflow.end_run()


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return flat


def _optional(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise UserError(f"report_to {module} needs the {module} package: pip install 'coat-pipe[{extra}]'") from None
