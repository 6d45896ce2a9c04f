"""The expert registry: a plain dict from name to loader, and `load_expert`."""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable
from typing import Any

import pydantic

from stages.extract.experts.base import Expert
from store_schema.errors import UserError

# name -> "module:class"; imported when used, so naming `mel` does not import transformers' audio models
EXPERTS: dict[str, str] = {
    "mel": "stages.extract.experts.mel:MelExpert",
    "pitch": "stages.extract.experts.pitch:PitchExpert",
    "pitch-class": "stages.extract.experts.pitch:PitchClassExpert",
    "beats": "stages.extract.experts.beats:BeatsExpert",
    "beats-tags": "stages.extract.experts.beats:BeatsTagsExpert",
    "whisper": "stages.extract.experts.whisper:WhisperExpert",
    "wavlm": "stages.extract.experts.wavlm:WavLMExpert",
    "hubert": "stages.extract.experts.hubert:HubertExpert",
    "emotion2vec": "stages.extract.experts.emotion2vec:Emotion2VecExpert",
    "emotion2vec-probs": "stages.extract.experts.emotion2vec:Emotion2VecProbsExpert",
    "wav2vec2-emotion": "stages.extract.experts.wav2vec2_emotion:Wav2Vec2EmotionExpert",
    "clap": "stages.extract.experts.clap:ClapExpert",
    "mert": "stages.extract.experts.mert:MertExpert",
}


def expert_class(name: str) -> Callable[..., Expert]:
    module, _, attr = EXPERTS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def expert_table() -> dict[str, tuple[str, str, str, str, str, str]]:
    """name -> (what it hears, model, rate in -> frames, kind, needs, where the weights come from), read from
    each class (this imports every expert's module: transformers' audio models included)."""
    return {name: expert_class(name).table_row() for name in EXPERTS}


# Signal processing, or weights shipped inside a wheel: nothing for --checkpoint/--model to point at.
WEIGHTLESS = frozenset({"mel", "pitch", "pitch-class"})


def weights_by_expert(names: list[str], given: list[str]) -> dict[str, str]:
    """`--checkpoint`/`--model` values as {expert: path or hub id}: EXPERT=VALUE pairs, or a bare VALUE
    when exactly one expert of NAMES takes weights."""
    models = [n for n in names if n not in WEIGHTLESS]
    weights = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep:  # a bare path or hub id (a hub id holds "/", never "=")
            if len(models) != 1:
                raise UserError(f"--checkpoint/--model {item}: say which expert it is for, as EXPERT={item}")
            name, value = models[0], item
        weights[name] = value
    return weights


def load_expert(
    name: str, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", **options: Any
) -> Expert:
    """Build the expert `name` with its weights from `checkpoint` (a hub id or local path) where it has any."""
    if name not in EXPERTS:
        raise UserError(f"unknown expert {name!r}; known experts: {', '.join(sorted(EXPERTS))}")
    loader = expert_class(name)
    accepted = set(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        settable = sorted(accepted - {"checkpoint", "device", "dtype"})
        raise UserError(
            f"expert {name!r} has no option {', '.join(unknown)}; its options: {', '.join(settable) or 'none'}"
        )
    options = _typed_options(name, loader, options)
    kwargs: dict[str, Any] = {"device": device, "dtype": dtype, **options}
    if "checkpoint" in accepted:
        kwargs["checkpoint"] = checkpoint
    elif checkpoint is not None:
        raise UserError(f"expert {name!r} has no weights to load; drop its checkpoint")
    expert = loader(**{k: v for k, v in kwargs.items() if k in accepted})
    expert.run_dtype = dtype
    return expert


def _typed_options(name: str, loader: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Each option converted to the type its constructor declares (`--set mel.n_mels=64`), or a UserError."""
    hints = typing.get_type_hints(loader.__init__ if inspect.isclass(loader) else loader)
    typed = {}
    for key, value in options.items():
        if key not in hints:
            typed[key] = value
            continue
        try:
            typed[key] = pydantic.TypeAdapter(hints[key]).validate_python(value)
        except pydantic.ValidationError:
            wanted = getattr(hints[key], "__name__", str(hints[key]))
            raise UserError(f"expert {name!r}: option {key}={value!r} is not a valid {wanted}") from None
    return typed


__all__ = ["EXPERTS", "WEIGHTLESS", "Expert", "expert_class", "expert_table", "load_expert", "weights_by_expert"]
