"""Ask a trained bundle about audio: the prompt with the thinking block, then the backbone's own generate.

The block ends the prompt, so one prefill covers audio, question and block; decoding then runs on the
KV cache like any other answer. The block's tokens are suppressed in decoding: the model can never
emit a thinking token, and none can reach the decoded text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from transformers import BatchFeature, LogitsProcessor, LogitsProcessorList

from stages.train.bundle import bundle_dir, load_bundle
from stages.train.model import CoatModel
from stages.train.prompt import encode_conversations


class BlockTokensBanned(LogitsProcessor):
    """Thinking tokens get -inf logits at every step: one in-place index fill, no per-step set test."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = torch.tensor(ids, dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.ids.device != scores.device:
            self.ids = self.ids.to(scores.device)
        return scores.index_fill_(-1, self.ids, float("-inf"))


@dataclass
class Answer:
    text: str
    new_ids: list[int]  # the generated tokens, end of turn included when reached
    prompt_ids: list[int]  # the prompt as the model saw it (audio placeholders expanded, no padding)


def for_inference(model: CoatModel, device: str | torch.device = "cpu") -> CoatModel:
    """On `device`, in eval mode, with LoRA and the block's token rows merged into the base weights:
    the same numbers, without the adapters' extra work at every decoding step."""
    model = model.to(torch.device(device)).eval()
    if isinstance(model.model, PeftModel):  # an export's merged model has nothing to merge
        model.model.merge_adapter()
    return model


def load_run(run: Path, device: str = "cpu", model_path: str | None = None) -> CoatModel:
    """A run's bundle, or a folder written by `coat-pipe export`, ready to answer."""
    from stages.export.load import is_export, load_export

    if is_export(run):
        return for_inference(load_export(run), device)
    return for_inference(load_bundle(bundle_dir(run), model_path=model_path), device)


def encode_prompts(
    model: CoatModel, waves: list[np.ndarray], questions: list[str], system: str | None = None
) -> BatchFeature:
    """Left-padded prompts (generation appends on the right) with the processor's audio features."""
    k = len(model.think.slots) if model.think else 0
    keys = [f"clip{i}" for i in range(len(waves))]
    return encode_conversations(
        model.backbone, model.processor, k, keys, waves, questions, padding_side="left", system=system
    )


@torch.inference_mode()
def answer(
    model: CoatModel,
    waves: list[np.ndarray],
    questions: list[str],
    max_new_tokens: int = 64,
    min_new_tokens: int = 0,
    observers: list[LogitsProcessor] | None = None,
    system: str | None = None,
) -> list[Answer]:
    """Greedy answers to `questions` about `waves` (16 kHz mono), one batch. `min_new_tokens` and
    `observers` (processors that watch each step, e.g. a clock) serve benchmarks."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in encode_prompts(model, waves, questions, system).items()}
    tokenizer = model.processor.tokenizer
    end = tokenizer.convert_tokens_to_ids(model.backbone.end_of_turn)
    banned = LogitsProcessorList([BlockTokensBanned(model.think.all)] if model.think else [])
    banned.extend(observers or [])
    out = model.model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=False,
        eos_token_id=end,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end,
        logits_processor=banned,
    )
    length = inputs["input_ids"].shape[1]
    answers = []
    for row, mask in zip(out, inputs["attention_mask"]):
        new = row[length:].tolist()
        if end in new:
            new = new[: new.index(end) + 1]
        prompt = inputs["input_ids"][len(answers)][mask.bool()].tolist()
        text = tokenizer.decode([t for t in new if t != end], skip_special_tokens=True).strip()
        answers.append(Answer(text, new, prompt))
    return answers
