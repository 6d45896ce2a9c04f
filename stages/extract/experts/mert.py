"""`mert`: music from MERT-v1 (24 kHz → 75 Hz), last layer by default, without remote code.

MERT-v1's checkpoints name a custom `mert_model` type whose code lives on the hub. Its encoder is
HuBERT's, so the weights are read into transformers' own HubertModel with a HubertConfig made from the
checkpoint's config. When a weight of the encoder is missing, loading is refused rather than left
randomly initialised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import HubertConfig, HubertModel

from stages.extract.experts.speech_encoder import TINY_SPEECH, SpeechEncoderExpert
from store_schema.errors import UserError


class MertHubert(HubertModel):
    """HubertModel reading MERT-v1 weights: every encoder weight must be present in the checkpoint."""

    @classmethod
    def from_pretrained(cls, source: str, *args: Any, trust_remote_code: bool = False, **kwargs: Any):  # noqa: ANN206
        config = HubertConfig.from_pretrained(source)
        model, info = super().from_pretrained(source, *args, config=config, output_loading_info=True, **kwargs)
        missing = [k for k in info["missing_keys"] if not k.startswith("masked_spec_embed")]
        if missing:
            raise UserError(f"{source}: not MERT/HuBERT weights; missing {missing[:3]}")
        return model


class MertExpert(SpeechEncoderExpert):
    name = "mert"
    sample_rate = 24000
    model_class = MertHubert
    hub_id = "m-a-p/MERT-v1-330M"
    model_types = ("mert_model", "hubert")
    hears, model_name, rates = "music", "MERT-v1 in HubertModel (no remote code)", "24 kHz -> 75 Hz"
    weights = "hub m-a-p/MERT-v1-330M"
    tiny_normalises = True

    @classmethod
    def tiny_model(cls) -> Any:
        return HubertModel(HubertConfig(**TINY_SPEECH, feat_extract_norm="group"))

    @classmethod
    def build_tiny(cls, folder: Path) -> Path:
        """A HuBERT encoder published under MERT's own model type, as MERT-v1's checkpoints are."""
        super().build_tiny(folder)
        config = json.loads((folder / "config.json").read_text())
        config.update(
            model_type="mert_model", architectures=["MERTModel"], auto_map={"AutoModel": "modeling_MERT.MERTModel"}
        )
        (folder / "config.json").write_text(json.dumps(config))
        return folder
