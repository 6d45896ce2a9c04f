"""The model card of an exported CoAT model: YAML metadata in the hub's conventions, then what was trained."""

from __future__ import annotations

from typing import Any

from stages.config_files import dump_yaml

HEADLINES = ("accuracy", "wer")  # the metric a benchmark's metrics.json leads with


def _headline(metrics: dict[str, Any]) -> tuple[str, float] | None:
    return next(((name, float(metrics[name])) for name in HEADLINES if name in metrics), None)


def model_card(meta: dict[str, Any], train: dict[str, Any], evaluations: dict[str, dict[str, Any]]) -> str:
    """README.md for an export: `meta` is coat_pipe.json, `train` the run's config.yaml, `evaluations`
    each RUN/eval/<benchmark>/metrics.json."""
    model = meta["model"]
    no_think = model.get("no_think", False)
    results = []
    for benchmark, metrics in evaluations.items():
        headline = _headline(metrics)
        if headline is not None:
            results.append(
                {
                    "task": {"type": "audio-text-to-text"},
                    "dataset": {"name": benchmark, "type": benchmark},
                    "metrics": [{"type": headline[0], "value": round(headline[1], 4)}],
                }
            )
    header: dict[str, Any] = {
        "library_name": "peft" if meta["adapter_only"] else "transformers",
        "base_model": meta["base_model"],
        "pipeline_tag": "audio-text-to-text",
        "tags": ["coat-pipe", "audio", "continuous-audio-thinking" if not no_think else "coat-baseline"],
    }
    if results:
        header["model-index"] = [{"name": f"coat-{meta['backbone']}", "results": results}]
    k = model.get("think_tokens", 0)
    lines = [
        "---",
        dump_yaml(header).rstrip(),
        "---",
        "",
        f"# {'CoAT' if not no_think else 'Baseline (no thinking block)'} on {meta['backbone']}",
        "",
        f"Fine-tuned from `{meta['base_model']}` with coat-pipe (Continuous Audio Thinking).",
        "",
    ]
    if no_think:
        lines += ["A `--no-think` baseline: the same LoRA training without the thinking block or the expert heads.", ""]
    else:
        lines += [
            f"The assistant turn opens with a block of {k} thinking positions, "
            f"`<|think_start|><|think_0|> … <|think_{k - 1}|><|think_end|>`, whose hidden states were trained "
            "to predict frozen audio experts' targets. The block is part of the prompt: the chat "
            "template's generation prompt ends with it, so "
            "`processor.apply_chat_template(conversation, add_generation_prompt=True)` gives "
            "the prompt the model was trained with, and `generation_config.json` suppresses the block's "
            "tokens in the output.",
            "",
        ]
    settings = {
        "thinking positions (K)": k if not no_think else "none",
        "supervised layer": model.get("think_layer") if model.get("think_layer") is not None else "2/3 of depth",
        "experts": ", ".join(meta["targets"]) or "none",
        "λ (distillation weight)": model.get("distill_weight"),
        "LoRA rank / alpha": f"{model.get('lora_rank')} / {model.get('lora_alpha')}",
        "schedule": train.get("schedule", "?"),
        "steps": train.get("steps", "?"),
        "batch size per rank": train.get("batch_size", "?"),
        "learning rate": train.get("lr", "?"),
        "corpus": train.get("corpus") or ", ".join(str(c.get("path")) for c in train.get("corpora") or []) or "?",
    }
    lines += ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in settings.items()]
    lines += [""]
    if evaluations:
        lines += ["## Evaluation (coat-pipe eval)", "", "| benchmark | n | metric | value |", "|---|---:|---|---:|"]
        for benchmark, metrics in evaluations.items():
            headline = _headline(metrics)
            if headline is not None:
                lines.append(f"| {benchmark} | {metrics.get('n', '?')} | {headline[0]} | {headline[1]:.4f} |")
        lines += [""]
    lines += [
        "## Use",
        "",
        "Load the folder with the backbone's own class and `AutoProcessor`; no remote code is needed.",
        "`coat_heads.safetensors` and `coat_pipe.json` are for coat-pipe (`coat-pipe generate --readout`).",
        "",
    ]
    if not no_think:
        ids = meta["think_ids"]
        lines += [
            "### Serving: keep the block's tokens out of the answer",
            "",
            "`generation_config.json` bans them (`suppress_tokens`). Where an engine ignores that field, ban",
            "them with the setting it reads instead (both give the same tokens as `suppress_tokens` under",
            "transformers' `generate`, tested by coat-pipe):",
            "",
            "```python",
            f"think_ids = {ids}",
            "# transformers, or any engine that takes token-id bans",
            "model.generate(**inputs, bad_words_ids=[[t] for t in think_ids])",
            "# OpenAI-compatible servers (vLLM's included): a logit bias of -100 on each",
            "{'logit_bias': {str(t): -100 for t in think_ids}}",
            "```",
            "",
        ]
    return "\n".join(lines)
