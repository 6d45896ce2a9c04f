"""Loading a transformers model for an expert: a hub id (or the HF cache) or a local directory, clear
errors when the weights are absent or belong to another model, remote code only when asked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from stages.extract.experts.base import Expert
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


def feature_extractor_normalises(source: str) -> bool:
    """The checkpoint's `do_normalize` (its preprocessor_config.json); False when it has none."""
    from transformers import AutoFeatureExtractor

    try:
        return bool(getattr(AutoFeatureExtractor.from_pretrained(source), "do_normalize", False))
    except (OSError, ValueError):
        return False


class HubExpert(Expert):
    """An expert whose weights load through transformers from a hub id or a local folder: the weights' model
    type checked before loading (when the class names the types it reads), remote code only when asked, the
    device and dtype it runs in, and the revision its fingerprint records."""

    hub_id: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]] = ()  # the config.json model types it reads; () = whatever loads

    def load_model(self, model_class: Any, checkpoint: str | None, device: str, dtype: str, trust_remote_code: bool):  # noqa: ANN201
        self.source = checkpoint or self.hub_id
        if self.model_types:
            check_model_type(self.source, self.model_types, self.name)
        model = load_pretrained(model_class, self.source, self.name, self.hub_id, device, dtype, trust_remote_code)
        self.device, self.dtype = torch.device(device), next(model.parameters()).dtype
        self._revision = revision_of(model, self.source)
        return model

    def choose_layer(self, layer: int | None, layers: int) -> int:
        """The hidden layer to read: `layer`, or the last (0 is the embeddings' output)."""
        if layer is not None and not 0 <= layer <= layers:
            raise UserError(f"{self.name}: layer must lie in [0, {layers}], got {layer}")
        return layers if layer is None else layer
