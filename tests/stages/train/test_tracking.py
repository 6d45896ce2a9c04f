"""Watching a run: W&B (offline) and MLflow (a file store under the run) log exactly what metrics.jsonl holds,
and every log line, also without a terminal, carries the rate, elapsed time and ETA."""

import json
import struct
from pathlib import Path

import pytest

from tests.helpers import cli

TRAIN = ["train", "--backbone", "tiny-qwen2-audio", "--think-tokens", 2, "--batch-size", 2, "--workers", 0]


def _wandb_history(run_dir: Path) -> list[dict]:
    """The history rows of an offline W&B run, read from its .wandb file: the LevelDB log format (32 KiB
    blocks of records with a 7-byte header: crc, length, type) after W&B's 7-byte file header, each record a
    wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/*run-*/run-*.wandb")
    data, block, rows, pending = path.read_bytes(), 32768, [], b""
    offset = 7
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # a block's tail too short for a header is padding
            offset += block - offset % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        payload, offset = data[offset + 7 : offset + 7 + length], offset + 7 + length
        if kind == 0 and length == 0:
            continue
        pending += payload
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                items = record.history.item
                row = {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in items}
                rows.append(row | {"_step": record.history.step.num})
    return rows


@pytest.mark.slow  # W&B's service process and MLflow's store start: seconds
def test_wandb_and_mlflow_log_exactly_the_metrics_rows(extracted_corpus, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as training sets it, for the client that reads back
    run = tmp_path / "run"
    trackers = ["--report-to", "tensorboard,wandb,mlflow", "--set", "run_group=arms", "--set", "run_tags=[coat, seed0]"]
    result = cli(*TRAIN, "--corpus", extracted_corpus, "--out", run, "--steps", 3, *trackers)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    numeric = [{k: v for k, v in r.items() if isinstance(v, int | float) and k != "step"} for r in rows]
    assert len(rows) == 3 and {"samples_per_s", "audio_hours_per_s", "elapsed_s", "eta_s"} <= set(numeric[0])

    history = _wandb_history(run)
    assert [h["_step"] for h in history] == [1, 2, 3]
    for logged, expected in zip(history, numeric):
        assert {k: v for k, v in logged.items() if not k.startswith("_")} == pytest.approx(expected, rel=1e-12)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    ids = json.loads((run / "tracking.json").read_text())
    mlflow_run = client.get_run(ids["mlflow"])
    assert mlflow_run.info.run_name == "run" and mlflow_run.data.tags["coat.tags"] == "coat,seed0"
    for key in numeric[0]:
        history = client.get_metric_history(ids["mlflow"], key)
        assert [m.step for m in history] == [r["step"] for r in rows]
        assert [m.value for m in history] == pytest.approx([r[key] for r in rows], rel=1e-12), key
    assert "wandb" in ids and "elapsed" in result.output


def test_every_log_line_carries_rate_elapsed_and_eta(extracted_corpus, tmp_path):
    result = cli(*TRAIN, "--corpus", extracted_corpus, "--out", tmp_path / "run", "--steps", 2)
    lines = [line for line in result.output.splitlines() if line.startswith("step ")]
    assert len(lines) == 2
    for line in lines:
        assert " clips/s " in line and " audio-s/s " in line and " elapsed 0:00:" in line and " eta 0:00:" in line
