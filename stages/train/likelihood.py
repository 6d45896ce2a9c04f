"""Likelihood scoring for multiple choice (evaluation, and validation while training), as lm-evaluation-harness
does it: each allowed answer is ranked
by the model's log-probability of its text (and the end of the turn) after the prompt, thinking block
included. One prefill of the prompt; then all choices are scored in one batch over its cached keys and
values. Separates hearing from answer format: a model that heard right but words its answer otherwise
still ranks the right choice first."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stages.train.model import CoatModel
from stages.train.prompt import encode_conversations


def choice_ids(model: CoatModel, choices: list[str]) -> list[list[int]]:
    """Each choice as the tokens the model would generate: its text, then the end of the turn."""
    tokenizer = model.processor.tokenizer
    return [tokenizer(c + model.backbone.end_of_turn, add_special_tokens=False)["input_ids"] for c in choices]


@torch.inference_mode()
def choice_logprobs(
    model: CoatModel, wave: object, question: str, choices: list[str], system: str | None = None
) -> list[float]:
    """Sum of log-probabilities of each choice's tokens after the prompt of (wave, question)."""
    device = next(model.parameters()).device
    k = len(model.think.slots) if model.think else 0
    encoded = encode_conversations(model.backbone, model.processor, k, ["clip"], [wave], [question], system=system)  # type: ignore[list-item]
    prompt = {key: value.to(device) for key, value in encoded.items()}
    prefill = model.model(**prompt, use_cache=True)
    first = F.log_softmax(prefill.logits[0, -1].float(), dim=-1)
    ids = choice_ids(model, choices)
    longest, count, length = max(len(i) for i in ids), len(ids), prompt["input_ids"].shape[1]
    pad = model.processor.tokenizer.pad_token_id or 0
    tokens = torch.full((count, longest), pad, dtype=torch.long, device=device)
    for row, seq in enumerate(ids):
        tokens[row, : len(seq)] = torch.tensor(seq, device=device)
    scores = first[tokens[:, 0]]
    if longest > 1:
        cache = prefill.past_key_values
        cache.batch_repeat_interleave(count)  # the prompt's keys and values, once per choice
        # No attention mask: the prompt has no padding (one row), and a choice's padding comes after its own
        # tokens, which causal attention never lets them see; each backbone then places the new tokens
        # after the cached ones itself (Qwen2.5-Omni's 3-D positions included).
        out = model.model(
            input_ids=tokens,
            past_key_values=cache,
            cache_position=torch.arange(length, length + longest, device=device),
            use_cache=True,
        )
        rest = F.log_softmax(out.logits[:, :-1].float(), dim=-1).gather(-1, tokens[:, 1:, None])[..., 0]
        valid = (
            torch.arange(1, longest, device=device)[None, :]
            < torch.tensor([len(i) for i in ids], device=device)[:, None]
        )
        scores = scores + (rest * valid).sum(dim=1)
    return scores.tolist()


def pick_choice(
    model: CoatModel, wave: object, question: str, choices: list[str], system: str | None = None
) -> tuple[str, list[float]]:
    """The most likely choice and every choice's log-probability."""
    scores = choice_logprobs(model, wave, question, choices, system)
    return choices[max(range(len(choices)), key=scores.__getitem__)], scores
