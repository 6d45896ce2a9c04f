"""The expert registry: a plain dict from name to loader, and `load_expert`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pipeline.errors import UserError
from stages.extract.experts.base import Expert
from stages.extract.experts.mel import MelExpert
from stages.extract.experts.pitch import PitchExpert

EXPERTS: dict[str, Callable[..., Expert]] = {
    "mel": MelExpert,
    "pitch": PitchExpert,
}


def load_expert(
    name: str, checkpoint: str | None = None, device: str = "cpu", dtype: str = "float32", **options: Any
) -> Expert:
    """Build the expert `name` with its weights from `checkpoint` (a hub id or local path) where it has any."""
    if name not in EXPERTS:
        raise UserError(f"unknown expert {name!r}; known experts: {', '.join(sorted(EXPERTS))}")
    loader = EXPERTS[name]
    accepted = set(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        settable = sorted(accepted - {"checkpoint", "device", "dtype"})
        raise UserError(
            f"expert {name!r} has no option {', '.join(unknown)}; its options: {', '.join(settable) or 'none'}"
        )
    kwargs: dict[str, Any] = {"device": device, "dtype": dtype, **options}
    if "checkpoint" in accepted:
        kwargs["checkpoint"] = checkpoint
    elif checkpoint is not None:
        raise UserError(f"expert {name!r} has no weights to load; drop its checkpoint")
    return loader(**{k: v for k, v in kwargs.items() if k in accepted})


__all__ = ["EXPERTS", "Expert", "load_expert"]
