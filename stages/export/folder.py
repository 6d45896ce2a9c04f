"""`coat-pipe export`: a trained run as a plain Hugging Face model folder, or as a PEFT adapter.

OUT/ (merged, the default)
  config.json, model.safetensors   the backbone's own class, LoRA and the block's token rows merged in
  generation_config.json          `suppress_tokens` = the block's tokens; the backbone's end of turn as eos
  tokenizer files, processor files the K + 2 thinking tokens as added special tokens
  chat_template(.jinja/.json)     the backbone's template, whose generation prompt ends with the block
  coat_heads.safetensors          the per-expert heads (for `generate --readout`; transformers ignores them)
  coat_pipe.json                  what coat-pipe needs to load the folder as a CoAT model again
  README.md                       a model card: base model, CoAT settings, corpus, eval figures

OUT/ (--adapter-only): adapter_config.json and adapter_model.safetensors (LoRA + the block's token rows,
and the resized embedding matrices where the vocabulary had to grow), with the same tokenizer, processor,
template, heads and card, for `PeftModel.from_pretrained(base, OUT)`.

CoAT's inference is K more prompt tokens, so the chat template carries the whole method: any engine
that reads a model folder and its template (transformers, vLLM) runs the model unchanged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoConfig, GenerationConfig

from stages.config_files import load_yaml
from stages.export.card import model_card
from stages.output_folder import replaced_folder
from stages.train.bundle import bundle_dir, load_bundle
from stages.train.model import CoatModel
from stages.train.think import thinking_block
from store_schema.errors import UserError

EXPORT_FORMAT = 1
META_FILE = "coat_pipe.json"
HEADS_FILE = "coat_heads.safetensors"


def block_suffix(k: int) -> str:
    """Appended to a chat template: after everything else, the generation prompt is followed by the block."""
    return "{% if add_generation_prompt %}" + thinking_block(k) + "{% endif %}"


def _generation_config(coat: CoatModel, base: GenerationConfig | None) -> GenerationConfig:
    tokenizer = coat.processor.tokenizer
    end = tokenizer.convert_tokens_to_ids(coat.backbone.end_of_turn)
    config = GenerationConfig.from_dict(base.to_dict()) if base is not None else GenerationConfig()
    config.eos_token_id = end
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    config.suppress_tokens = coat.think.all if coat.think else None  # the block is prompt only, never output
    config.do_sample = False
    return config


def _vocabulary_grew(coat: CoatModel) -> bool:
    """Whether the embeddings were resized for the block's tokens (the tiny twins; real checkpoints have room)."""
    base_vocab = AutoConfig.from_pretrained(coat.source).get_text_config().vocab_size
    return coat.model.get_base_model().config.get_text_config().vocab_size > base_vocab


def _evaluations(run: Path) -> dict[str, dict[str, Any]]:
    """metrics.json of each evaluation under RUN/eval/, by benchmark."""
    found = {}
    for path in sorted((run / "eval").glob("*/metrics.json")) if (run / "eval").is_dir() else []:
        try:
            found[path.parent.name] = json.loads(path.read_text())
        except ValueError:
            continue  # a half-written evaluation is left out of the card, not fatal to the export
    return found


def export_run(run: Path, out: Path, adapter_only: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Write RUN's trained model into OUT (see the module docstring); returns seconds and bytes. OUT must be new
    or empty; with `overwrite` an old export there is replaced whole (nothing of it is left beside the new)."""
    started = time.perf_counter()
    bundle = bundle_dir(run)
    with replaced_folder(out, overwrite) as staging:
        _write_export(run, bundle, staging, adapter_only)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"out": str(out), "seconds": time.perf_counter() - started, "bytes": size, "adapter_only": adapter_only}


def _write_export(run: Path, bundle: Path, out: Path, adapter_only: bool) -> None:
    coat = load_bundle(bundle).eval()
    if coat.oracle is not None:  # a plain model folder has no way to take a clip's targets at its block
        raise UserError(
            f"{run} is an oracle run (model.oracle): it answers only with its clips' store targets, "
            "so it has no plain-model export; score it with `coat-pipe eval --benchmark synth`"
        )
    k = len(coat.think.slots) if coat.think else 0
    processor = coat.processor
    if coat.think:
        processor.chat_template = processor.chat_template + block_suffix(k)
    full = not isinstance(coat.model, PeftModel)  # a full fine-tune: the bundle's weights are the model
    if adapter_only and full:
        raise UserError(f"{run} is a full fine-tune (lora_rank 0): it has no adapter; export it without --adapter-only")
    if adapter_only:
        # PEFT's own format: LoRA, trainable token rows, and the embedding matrices when they were resized
        coat.model.save_pretrained(out, save_embedding_layers=_vocabulary_grew(coat))
        generation = _generation_config(coat, coat.model.get_base_model().generation_config)
    else:
        merged = coat.model if full else coat.model.merge_and_unload()
        generation = _generation_config(coat, merged.generation_config)
        merged.generation_config = generation
        merged.save_pretrained(out)
    generation.save_pretrained(out)
    processor.save_pretrained(out)
    if len(coat.heads):
        save_file({n: t.detach().contiguous() for n, t in coat.heads.state_dict().items()}, out / HEADS_FILE)
    meta = {
        "format": EXPORT_FORMAT,
        "adapter_only": adapter_only,
        "backbone": coat.backbone.name,
        "base_model": coat.source,
        "model": coat.config.model_dump(mode="json"),
        "think_ids": coat.think.all if coat.think else None,
        "block_suffix": block_suffix(k) if coat.think else "",
        "targets": {e: s.to_stats().to_json() for e, s in coat.specs.items()},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    train_config = _read_yaml(run / "config.yaml") if (run / "config.yaml").is_file() else {}
    (out / "README.md").write_text(model_card(meta, train_config, _evaluations(run)))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = load_yaml(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({e})") from None
    return loaded if isinstance(loaded, dict) else {}
