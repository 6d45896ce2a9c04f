"""The model bundle: what training writes and evaluation reads.

RUN/final/
  config.yaml            the resolved ModelConfig, the backbone, its weights' source, the think token ids
  adapter/               the PEFT adapter: LoRA weights and the block's token rows (trainable tokens)
  model/                 instead of adapter/ for a full fine-tune (lora_rank 0): the whole model, safetensors
  processor/             the backbone's processor with the block's tokens in its tokenizer
  heads.safetensors      the per-expert heads (training only; kept for readout and probes)
  targets.json           each head's expert: kind, dim, fingerprint and the store stats it was trained on
  manifest.json          sha256 and size of every file above, checked before anything is loaded
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from peft import PeftModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stages.config_files import dump_yaml, load_yaml
from stages.file_manifest import MANIFEST, verify_files, write_manifest
from stages.progress import console
from stages.train.config import ModelConfig
from stages.train.model import CoatModel
from stages.train.targets import TargetSpec
from store_schema.errors import UserError
from store_schema.stats import ExpertStats


def save_bundle(model: CoatModel, out: Path | str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": model.config.model_dump(mode="json"),
        "backbone": model.backbone.name,
        "source": model.source,
        "think_ids": model.think.all if model.think else None,
    }
    (out / "config.yaml").write_text(dump_yaml(meta))
    if isinstance(model.model, PeftModel):
        model.model.save_pretrained(out / "adapter")
    else:  # a full fine-tune: the weights themselves, loadable on their own (with the processor beside them)
        model.model.save_pretrained(out / "model")
        model.processor.save_pretrained(out / "model")
    model.processor.save_pretrained(out / "processor")
    if len(model.heads):
        save_file({k: v.detach().contiguous() for k, v in model.heads.state_dict().items()}, out / "heads.safetensors")
    if model.oracle is not None:
        oracle = {k: v.detach().contiguous() for k, v in model.oracle.state_dict().items()}
        save_file(oracle, out / "oracle.safetensors")
    (out / "targets.json").write_text(json.dumps({e: s.to_stats().to_json() for e, s in model.specs.items()}, indent=1))
    write_manifest(out)
    return out


def bundle_dir(run: Path) -> Path:
    """A run directory's `final/`, or the bundle folder itself; a one-line error for anything else."""
    for candidate in (run / "final", run):
        weights = (candidate / "adapter").is_dir() or (candidate / "model").is_dir()
        if (candidate / "config.yaml").is_file() and weights:
            return candidate
    raise UserError(f"{run}: no model bundle (expected {run}/final/ from `coat-pipe train`)")


def load_bundle(path: Path | str, backbone: str | None = None, model_path: str | None = None) -> CoatModel:
    """A CoatModel as saved. `backbone`, when given, must be the bundle's family; `model_path` relocates the base."""
    path = Path(path)
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise UserError(f"{path} is not a coat-pipe model bundle (no config.yaml); bundles are written to RUN/final/")
    if (path / MANIFEST).is_file():
        verify_files(path)  # a file altered, truncated, removed or added since training wrote the bundle
    else:
        console.print(f"warning: {path} has no {MANIFEST} (written before bundles had one): loaded unverified")
    try:
        meta = load_yaml(config_file.read_text())
        config = ModelConfig.model_validate(meta["model"])
        meta["backbone"], meta["think_ids"]  # noqa: B018 - present, or the bundle is damaged
        targets = json.loads((path / "targets.json").read_text())
    except (OSError, yaml.YAMLError, ValueError, KeyError, TypeError) as e:  # pydantic's error is a ValueError
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: a damaged model bundle ({type(e).__name__}: {reason})") from None
    if model_path is not None:
        config = config.model_copy(update={"model_path": model_path})
    if backbone is not None and backbone.removeprefix("tiny-") != meta["backbone"]:
        raise UserError(f"{path} was trained on {meta['backbone']}, not {backbone}; load it with its own backbone")
    specs = {e: TargetSpec.from_stats(ExpertStats.from_json(d)) for e, d in targets.items()}
    if (path / "model").is_dir():  # a full fine-tune: the bundle holds the weights, block rows included
        config = config.model_copy(update={"model_path": str(path / "model")})
    base_backbone, source, model, processor, think = CoatModel.load_base(config)
    if (think.all if think else None) != meta["think_ids"]:
        raise UserError(f"{path}: the base tokenizer gives other ids to the thinking tokens than training did")
    if (path / "model").is_dir():
        coat = CoatModel(config, base_backbone, meta["source"], model, processor, think, specs)
    else:
        peft_model = PeftModel.from_pretrained(model, str(path / "adapter"))
        coat = CoatModel(config, base_backbone, source, peft_model, processor, think, specs)
    if len(coat.heads):
        try:
            coat.heads.load_state_dict(load_file(path / "heads.safetensors"))
        except (OSError, RuntimeError, SafetensorError) as e:  # shapes or names that are not these heads'
            reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"{path / 'heads.safetensors'}: not the heads this bundle describes ({reason})") from None
    if coat.oracle is not None:
        try:
            coat.oracle.load_state_dict(load_file(path / "oracle.safetensors"))
        except (OSError, RuntimeError, SafetensorError) as e:
            reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"{path / 'oracle.safetensors'}: not the oracle this bundle describes ({reason})") from None
    return coat.eval()
