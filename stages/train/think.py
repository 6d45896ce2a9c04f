"""The thinking block: its K + 2 special tokens and where they sit in a conversation.

    assistant: <|think_start|><|think_0|> … <|think_{K-1}|><|think_end|> response<end of turn>

The block opens the assistant turn, so at inference it is part of the prompt and runs in the same
single prefill as the audio and the question.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

THINK_START, THINK_END = "<|think_start|>", "<|think_end|>"


def think_token(k: int) -> str:
    return f"<|think_{k}|>"


def thinking_tokens(k: int) -> list[str]:
    """The K + 2 special tokens, in block order."""
    return [THINK_START, *(think_token(i) for i in range(k)), THINK_END]


def thinking_block(k: int) -> str:
    """The block as text; each token is a single special token once added to the tokenizer."""
    return "".join(thinking_tokens(k))


@dataclass(frozen=True)
class ThinkIds:
    """Token ids of the block, resolved against one tokenizer."""

    start: int
    slots: tuple[int, ...]  # the K thinking positions the heads read
    end: int

    @property
    def all(self) -> list[int]:
        return [self.start, *self.slots, self.end]

    def slot_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, K) positions of the thinking tokens in each row; raises unless each appears exactly once."""
        slots = torch.tensor(self.slots, device=input_ids.device)
        hits = input_ids.unsqueeze(-1) == slots  # (B, L, K)
        counts = hits.sum(dim=1)  # (B, K)
        if not (counts == 1).all():
            raise ValueError(
                f"expected each of the {len(self.slots)} thinking tokens once per row, got counts {counts}"
            )
        return hits.float().argmax(dim=1)  # (B, K)


def add_thinking_tokens(tokenizer, k: int) -> ThinkIds:  # noqa: ANN001 - any transformers tokenizer
    """Add the block's tokens as special tokens (idempotent) and return their ids."""
    tokens = thinking_tokens(k)
    missing = [t for t in tokens if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    return ThinkIds(ids[0], tuple(ids[1:-1]), ids[-1])
