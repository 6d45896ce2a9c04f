"""Loading a transformers model for an expert: a hub id (or the HF cache) or a local directory, clear
errors when the weights are absent or belong to another model, remote code only when asked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from store_schema.errors import UserError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_pretrained(
    model_class: Any,
    source: str,
    expert: str,
    hub_id: str,
    device: str,
    dtype: str,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> Any:
    """`model_class.from_pretrained(source)` in eval mode on `device`, or a one-line UserError."""
    try:
        model = model_class.from_pretrained(source, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, **kwargs)
    except OSError as err:
        raise UserError(
            f"no {expert} weights at {source} ({str(err).splitlines()[0]}); download them with "
            f"`hf download {hub_id}` where there is network access and pass --checkpoint {expert}=PATH"
        ) from None
    except (ValueError, KeyError) as err:  # a config of another family
        raise UserError(f"{source} is not a {expert} checkpoint ({str(err).splitlines()[0]})") from None
    if not model_class.__name__.startswith("Auto") and not isinstance(model, model_class):
        raise UserError(f"{source} holds a {type(model).__name__}, not a {model_class.__name__} ({expert})")
    return model.to(device).eval()


def check_model_type(source: str, expected: tuple[str, ...], expert: str) -> None:
    """Refuse a local directory whose config.json names another model type before loading it."""
    config = Path(source) / "config.json"
    if config.is_file():
        model_type = json.loads(config.read_text()).get("model_type")
        if model_type not in expected:
            raise UserError(f"{source} holds a {model_type!r} model, not {expert} ({' or '.join(expected)})")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def weights_digest(folder: Path) -> str:
    """sha256 over the names and bytes of a local model folder's weight files: new weights saved at the same
    path give a new digest (a whole read of the weights, seconds at large-v3's 3 GB, once per run)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def revision_of(model: Any, source: str) -> str:
    """The hub commit when known; else a digest of the config and, for a local folder, of its weight files:
    what decides the numbers."""
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return str(commit)
    text = json.dumps(model.config.to_dict(), sort_keys=True, default=str)
    if Path(source).is_dir():
        text += weights_digest(Path(source))
    return hashlib.sha256((source + text).encode()).hexdigest()[:16]
