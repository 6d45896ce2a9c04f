"""`beats` (sound-event embeddings, 6.25 Hz) and `beats-tags` (AudioSet logits per clip) from BEATs.

Weights: the official checkpoint files of https://github.com/microsoft/unilm/tree/master/beats,
for instance BEATs_iter3_plus_AS2M.pt for `beats` and
BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt for `beats-tags`. Pass them with
`--checkpoint beats=PATH`.

Frames are the tokens of one 160 ms time patch averaged over its 8 frequency patches. The default
layer is the last one. Clips longer than one window (62 patches, 9.92 s) are cut into windows that
start exactly 62 patches apart, so frame times continue evenly from one window to the next.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.extract.experts.base import Expert
from stages.extract.experts.beats_model import Beats, BeatsConfig, load_beats
from stages.file_manifest import sha256_file
from store_schema.errors import UserError

HOP = 160  # fbank frame shift in samples at 16 kHz
WIN = 400  # fbank frame length
PATCH = 16  # fbank frames per time patch
PATCHES_PER_WINDOW = 62
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SOURCE = "https://github.com/microsoft/unilm/tree/master/beats"


def checkpoint_digest(path: Path) -> str:
    return sha256_file(path)[:16]


def open_checkpoint(checkpoint: str | None, wanted: str, device: str, dtype: str) -> tuple[Beats, Path]:
    if checkpoint is None or not Path(checkpoint).is_file():
        where = f"at {checkpoint}" if checkpoint else "given"
        raise UserError(
            f"no BEATs checkpoint {where}; download {wanted} from {SOURCE} and pass --checkpoint beats=PATH"
        )
    try:
        model, _ = load_beats(Path(checkpoint), device, DTYPES[dtype])
    except (ValueError, RuntimeError, OSError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as err:
        # wrong file, truncated file, other model, or a pickle with code in it (weights_only refuses it)
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{checkpoint}: not a usable BEATs checkpoint ({reason})") from None
    return model, Path(checkpoint)


def windows(wave: np.ndarray) -> list[np.ndarray]:
    """Windows of 62 patches each (the last may be shorter) whose patches tile the clip evenly."""
    step = PATCHES_PER_WINDOW * PATCH * HOP
    span = WIN + (PATCHES_PER_WINDOW * PATCH - 1) * HOP
    return [wave[start : start + span] for start in range(0, max(1, len(wave) - WIN + 1), step)]


def tiny_beats_config(finetuned: bool = False) -> BeatsConfig:
    """A 2-layer, 48-wide BEATs (with a 10-tag predictor when `finetuned`): the tiny twin's shape."""
    return BeatsConfig(
        embed_dim=32,
        encoder_embed_dim=48,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_embed_dim=64,
        conv_pos=16,
        conv_pos_groups=4,
        num_buckets=32,
        max_distance=64,
        finetuned_model=finetuned,
        predictor_class=10,
    )


class BeatsExpert(Expert):
    """BEATs tokens per 160 ms, averaged over frequency: (T, 768) at 6.25 Hz."""

    name = "beats"
    kind = "embedding"
    hears, model_name, rates = "sound events", "BEATs (own implementation)", "16 kHz -> 6.25 Hz"
    weights = "BEATs_iter3_plus_AS2M.pt from github.com/microsoft/unilm/tree/master/beats"
    sample_rate = 16000
    frame_rate = 16000 / (PATCH * HOP)  # 6.25 Hz
    min_seconds = (WIN + (PATCH - 1) * HOP) / 16000  # one whole patch

    def __init__(
        self, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", layer: int | None = None
    ) -> None:
        self.model, self.path = open_checkpoint(checkpoint, "BEATs_iter3_plus_AS2M.pt", device, dtype)
        self.layers = self.model.cfg.encoder_layers
        if layer is not None and not 1 <= layer <= self.layers:
            raise UserError(f"beats: layer must lie in [1, {self.layers}], got {layer}")
        self.layer = layer
        self.dim = self.model.cfg.encoder_embed_dim
        self.device = torch.device(device)
        self._revision = checkpoint_digest(self.path)

    @classmethod
    def build_tiny(cls, folder: Path) -> Path:
        """An official-format checkpoint: a torch file with the config (`cfg`) and the state dict (`model`)."""
        cfg = tiny_beats_config(finetuned=cls.kind == "logits")
        path = folder / "BEATs_tiny.pt"
        torch.save({"cfg": dataclasses.asdict(cfg), "model": Beats(cfg).state_dict()}, path)
        return path

    def frame_times(self, num_frames: int) -> np.ndarray:
        """A patch spans fbank frames 16p … 16p+15, whose centres average to 0.16 p + 0.0875 s."""
        return (np.arange(num_frames) * PATCH * HOP + (PATCH - 1) * HOP / 2 + WIN / 2) / self.sample_rate

    def _tokens(self, pieces: list[np.ndarray]) -> list[torch.Tensor]:
        """(P, 8, D) tokens of each window, padded windows batched with their padding masked."""
        feats = [Beats.features(torch.from_numpy(p).to(self.device)) for p in pieces]
        frames = torch.tensor([len(f) for f in feats])
        batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        tokens, valid = self.model(batch, frames, self.layer)
        return [tokens[i, : int(valid[i].sum())].float().cpu() for i in range(len(pieces))]

    def _clip_tokens(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        """(P, 8, D) tokens of each clip: all clips' windows in one batch, joined back per clip."""
        pieces = [windows(w) for w in waves]
        flat = self._tokens([p for clip in pieces for p in clip])
        out, at = [], 0
        for clip in pieces:
            out.append(torch.cat(flat[at : at + len(clip)]))
            at += len(clip)
        return out

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return [tokens.mean(dim=1).numpy().astype(np.float32) for tokens in self._clip_tokens(waves)]

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.path.name), "revision": self._revision, "layer": str(self.layer or self.layers)}


class BeatsTagsExpert(BeatsExpert):
    """AudioSet logits of a fine-tuned BEATs: the predictor over every token, averaged over the clip."""

    name = "beats-tags"
    kind = "logits"
    hears, model_name, rates = "AudioSet tags", "BEATs fine-tuned predictor", "16 kHz -> clip"
    weights = "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt (same page)"
    frame_rate = 0.0  # one frame per clip

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32") -> None:
        self.model, self.path = open_checkpoint(
            checkpoint, "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt", device, dtype
        )
        if not hasattr(self.model, "predictor"):
            raise UserError(
                f"{checkpoint} is a pre-trained BEATs without a tag predictor; beats-tags needs a fine-tuned "
                f"checkpoint such as BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt from {SOURCE}"
            )
        self.layer, self.layers = None, self.model.cfg.encoder_layers
        self.dim = self.model.cfg.predictor_class
        self.device = torch.device(device)
        self._revision = checkpoint_digest(self.path)

    def frame_times(self, num_frames: int) -> np.ndarray:
        return np.zeros(num_frames)

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for tokens in self._clip_tokens(waves):
            every = tokens.flatten(0, 1).to(self.device, self.model.predictor.weight.dtype)  # (time × frequency)
            logits = self.model.predictor(every).float().mean(0)
            out.append(logits.cpu().numpy()[None, :].astype(np.float32))
        return out

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.path.name), "revision": self._revision, "layer": "predictor"}
