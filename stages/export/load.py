"""An exported folder as a CoatModel again, so `generate`, `eval` and `--readout` take it as `--run`."""

from __future__ import annotations

import json
from pathlib import Path

from peft import PeftModel
from safetensors.torch import load_file

from stages.export.folder import EXPORT_FORMAT, HEADS_FILE, META_FILE
from stages.train.backbones import BACKBONES, resolve_backbone
from stages.train.config import ModelConfig, resolved_dtype
from stages.train.model import DTYPES, CoatModel
from stages.train.targets import TargetSpec
from stages.train.think import ThinkIds
from store_schema.errors import UserError
from store_schema.stats import ExpertStats


def is_export(folder: Path) -> bool:
    return (Path(folder) / META_FILE).is_file()


def load_export(folder: Path | str) -> CoatModel:
    """The model of an export made by `coat-pipe export` (merged, or adapter-only on its base model).

    The processor's template gets its block suffix removed: coat-pipe adds the block itself, exactly as in
    training, so the prompt is the same whichever way the folder is used."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META_FILE).read_text())
        config = ModelConfig.model_validate(meta["model"])
        family, think_ids = meta["backbone"], meta["think_ids"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{folder / META_FILE}: not a coat-pipe export ({type(e).__name__}: {e})") from None
    if meta.get("format") != EXPORT_FORMAT or family not in BACKBONES:
        raise UserError(f"{folder}: export format {meta.get('format')} of {family!r} is not one this coat-pipe reads")
    backbone = BACKBONES[family]
    if meta["adapter_only"]:  # the base model as training loaded it (block tokens added), then PEFT's adapter
        base_config = config.model_copy(update={"model_path": meta["base_model"]})
        backbone, source, model, processor, _ = CoatModel.load_base(base_config)
        processor = backbone.load_processor(folder)
        model = PeftModel.from_pretrained(model, str(folder))
    else:
        source = str(folder)
        model, processor = backbone.load(folder, DTYPES[resolved_dtype(config.dtype)], config.attn_implementation)
    resolve_backbone(family)  # validates the family name the same way training does
    if meta.get("block_suffix"):
        processor.chat_template = processor.chat_template.removesuffix(meta["block_suffix"])
    think = None
    if think_ids is not None:
        tokenizer = processor.tokenizer
        tokens = tokenizer.convert_ids_to_tokens(think_ids)
        if tokenizer.convert_tokens_to_ids(tokens) != think_ids:
            raise UserError(f"{folder}: its tokenizer does not hold the thinking tokens it was exported with")
        think = ThinkIds(think_ids[0], tuple(think_ids[1:-1]), think_ids[-1])
    specs = {e: TargetSpec.from_stats(ExpertStats.from_json(d)) for e, d in meta["targets"].items()}
    coat = CoatModel(config, backbone, source, model, processor, think, specs)
    if len(coat.heads) and (folder / HEADS_FILE).is_file():
        coat.heads.load_state_dict(load_file(folder / HEADS_FILE))
    return coat.eval()
