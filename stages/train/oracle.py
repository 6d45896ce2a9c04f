"""The oracle arm, a positive control: the block's input embeddings receive a learned linear map of the clip's
true per-slot expert targets, in training and at test. It bounds what a thinking block can carry into the
answers of a task: if the oracle does not beat the block control, no supervision of the block can.

    model = CoatModel.build(ModelConfig(..., oracle=True), specs)
    with model.targets_given(batch.targets):      # every forward inside adds W_e · [slots_e · mask_e, mask_e]
        logits = model.model(**inputs).logits      # to the embedding of thinking token k, for each expert e

Only the oracle reads targets at its input; every other arm uses them for its loss alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from stages.train.targets import SlotTargets, TargetSpec, make_targets
from store_schema.corpus import iter_tar_samples, read_corpus
from store_schema.errors import UserError
from store_schema.layout import Status
from store_schema.reader import ShardStore


class OracleInput(nn.Module):
    """Per expert a linear map from (slot targets × mask, mask) to the LM's width, zero at initialisation (the
    oracle starts as the block control), added to the thinking tokens' input embeddings by a forward hook."""

    def __init__(self, specs: dict[str, TargetSpec], hidden: int, slot_ids: tuple[int, ...]) -> None:
        super().__init__()
        self.maps = nn.ModuleDict({name: nn.Linear(2 * spec.dim, hidden) for name, spec in specs.items()})
        for linear in self.maps.values():
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
        self.register_buffer("slot_ids", torch.tensor(slot_ids), persistent=False)  # moves with the model
        self.vectors: torch.Tensor | None = None  # (B, K, H) while targets are given

    def embed(self, targets: dict[str, SlotTargets]) -> torch.Tensor:
        """(B, K, H): the sum over experts of each expert's map of its slot targets."""
        total = 0
        for name, linear in self.maps.items():
            if name not in targets:
                raise ValueError(f"the oracle needs the {name!r} targets of every clip it answers")
            t = targets[name].to(linear.weight.device)
            features = torch.cat([t.slots * t.slot_mask, t.slot_mask], dim=-1) * t.valid[:, None, None]
            total = total + linear(features.to(linear.weight.dtype))
        return total  # type: ignore[return-value]

    @contextmanager
    def given(self, targets: dict[str, SlotTargets]) -> Iterator[None]:
        self.vectors = self.embed(targets)
        try:
            yield
        finally:
            self.vectors = None

    def add_to_embeddings(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """The embedding layer's forward hook: thinking token k of row b gets vectors[b, k] added."""
        ids = args[0]
        hits = ids.unsqueeze(-1) == self.slot_ids  # (B, L, K)
        if not hits.any():  # decoding steps, the choices' tokens: no block here
            return output
        if self.vectors is None:
            raise RuntimeError("an oracle model was run on a block without its clips' targets (targets_given)")
        if self.vectors.shape[0] != ids.shape[0]:
            raise RuntimeError(f"targets for {self.vectors.shape[0]} clips, a batch of {ids.shape[0]}")
        added = torch.einsum("blk,bkh->blh", hits.to(self.vectors.dtype), self.vectors)
        return output + added.to(output.dtype)


def corpus_targets(
    corpus_dir: Path | str, specs: dict[str, TargetSpec], k: int, keys: list[str]
) -> dict[str, dict[str, SlotTargets]]:
    """key -> {expert: SlotTargets of one clip} from a corpus's store, for those of `keys` whose every expert
    has an ok status there (an oracle run's evaluation: a clip left out is an unanswered item, named)."""
    corpus = read_corpus(corpus_dir)
    wanted, found = set(keys), {}
    for shard in corpus.shards:
        tar = corpus.tar_path(shard)
        try:
            groups = {e: ShardStore.for_tar(tar).expert(e) for e in specs}
        except (KeyError, FileNotFoundError, ValueError) as e:
            raise UserError(f"{tar}: the oracle's experts {', '.join(specs)} are not all in its store ({e})") from None
        for index, raw in enumerate(iter_tar_samples(tar)):
            key = raw["__key__"]
            if key in wanted and all(g.status[index] == Status.OK for g in groups.values()):
                found[key] = {
                    e: make_targets(spec, [groups[e].frames_of(index)], [groups[e].clip[index]], k)
                    for e, spec in specs.items()
                }
    return found


def stack_targets(rows: list[dict[str, SlotTargets]]) -> dict[str, SlotTargets]:
    """One batch from single-clip targets, in order."""
    return {
        name: SlotTargets(*(torch.cat([getattr(r[name], f) for r in rows]) for f in vars(rows[0][name])))
        for name in rows[0]
    }
