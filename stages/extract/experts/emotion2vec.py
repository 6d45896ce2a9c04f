"""`emotion2vec` (affect embeddings, 16 kHz → 50 Hz) and `emotion2vec-probs` (the emotion classes per
clip) from emotion2vec+ through FunASR, an optional extra: pip install 'coat-pipe[emotion2vec]'.

FunASR loads a model directory in its own format (`--checkpoint emotion2vec=DIR` holding
config.yaml and model.pt), or downloads `iic/emotion2vec_plus_large` from its hub when no directory
is given. Each clip goes through FunASR's own `generate`, one at a time, which is its interface for
this model. Frames are the data2vec encoder's, one per 320 samples. FunASR runs the model in
float32 whatever `--dtype` says.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from stages.extract.experts.base import Expert
from stages.extract.experts.clip_level import ClipExpert
from stages.extract.experts.hf_loading import weights_digest
from store_schema.errors import UserError

HUB_ID = "iic/emotion2vec_plus_large"
HOP, FIELD = 320, 400


def _funasr_model(checkpoint: str | None, device: str, trust_remote_code: bool) -> Any:
    """FunASR's AutoModel for a model folder (or the hub id). FunASR merges the folder's config.yaml into its
    arguments, and a folder may ask for `trust_remote_code` there (FunASR then imports its code and installs
    its requirements.txt). The arguments given here win that merge, so --trust-remote-code alone decides."""
    if checkpoint is not None and not (Path(checkpoint) / "config.yaml").is_file():
        raise UserError(
            f"no emotion2vec model at {checkpoint} (a FunASR model folder with config.yaml and model.pt); "
            f"download {HUB_ID} where there is network access and pass --checkpoint emotion2vec=DIR"
        )
    try:
        from funasr import AutoModel
    except ImportError:
        raise UserError(
            "emotion2vec runs through FunASR, which is not installed: pip install 'coat-pipe[emotion2vec]', "
            "or use wav2vec2-emotion"
        ) from None
    try:
        return AutoModel(
            model=checkpoint or HUB_ID,
            device=device,
            disable_update=True,
            disable_pbar=True,
            disable_log=True,
            trust_remote_code=trust_remote_code,
        )
    except Exception as err:  # noqa: BLE001 - FunASR raises whatever a malformed folder leads to
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{checkpoint or HUB_ID}: not a usable emotion2vec model ({reason})") from None


def _revision(source: str) -> str:
    """A model folder's weights and config (config.yaml is not a weight file, so it is added), else the hub id."""
    folder = Path(source)
    if not folder.is_dir():
        return source
    config = folder / "config.yaml"
    text = weights_digest(folder) + (config.read_text() if config.is_file() else "")
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


class Emotion2VecExpert(Expert):
    name = "emotion2vec"
    kind = "embedding"
    hears, model_name, rates = "affect", "emotion2vec+ via FunASR", "16 kHz -> 50 Hz"
    needs, weights = "extra [emotion2vec]", "FunASR hub iic/emotion2vec_plus_large"
    dtype_matters = False  # FunASR runs float32
    sample_rate = 16000
    frame_rate = 16000 / HOP
    min_seconds = FIELD / 16000

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> None:
        self.source = checkpoint or HUB_ID
        self.model = _funasr_model(checkpoint, device, trust_remote_code)
        self.dim = int(self.model.model.cfg.get("embed_dim"))

    @classmethod
    def build_tiny(cls, folder: Path) -> Path:
        return build_tiny_funasr_folder(folder)

    def frame_times(self, num_frames: int) -> np.ndarray:
        return (np.arange(num_frames) * HOP + FIELD / 2) / self.sample_rate

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for wave in waves:
            result = self.model.generate(wave, granularity="frame", extract_embedding=True)[0]
            out.append(np.asarray(result["feats"], dtype=np.float32))
        return out

    def describe(self) -> dict[str, Any]:
        return {"model": self.source, "revision": _revision(self.source), "layer": "frame"}


class Emotion2VecProbsExpert(ClipExpert):
    name = "emotion2vec-probs"
    kind = "probs"
    hears, model_name, rates = "affect", "emotion2vec+ via FunASR", "16 kHz -> clip (9 classes)"
    needs, weights = "extra [emotion2vec]", "FunASR hub iic/emotion2vec_plus_large"
    dtype_matters = False
    sample_rate = 16000
    min_seconds = FIELD / 16000

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        trust_remote_code: bool = False,
    ) -> None:
        self.source = checkpoint or HUB_ID
        self.model = _funasr_model(checkpoint, device, trust_remote_code)
        tokenizer = self.model.kwargs.get("tokenizer")
        if tokenizer is None or getattr(self.model.model, "proj", None) is None:
            raise UserError(f"{self.source}: this emotion2vec model has no classifier; use the `emotion2vec` expert")
        self.labels = [t for t in tokenizer.token_list if not t.startswith("unuse")]  # FunASR drops "unuse*"
        self.dim = len(self.labels)

    @classmethod
    def build_tiny(cls, folder: Path) -> Path:
        return build_tiny_funasr_folder(folder)

    def __call__(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for wave in waves:
            result = self.model.generate(wave, granularity="utterance", extract_embedding=False)[0]
            out.append(np.asarray(result["scores"], dtype=np.float32)[None, :])
        return out

    def describe(self) -> dict[str, Any]:
        options = {"labels": self.labels}
        return {"model": self.source, "revision": _revision(self.source), "layer": "utterance", "options": options}


def build_tiny_funasr_folder(folder: Path) -> Path:
    """A FunASR model folder (config.yaml + model.pt) of a 2-layer, 32-wide Emotion2vec with 9 labels."""
    import torch
    import yaml
    from funasr.models.emotion2vec.model import Emotion2vec

    labels = ["angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"]
    audio = dict(
        type="AUDIO",
        feature_encoder_spec="[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2",
        extractor_mode="layer_norm",
        conv_pos_depth=2,
        conv_pos_width=16,
        conv_pos_groups=4,
        conv_pos_pre_ln=False,
        start_drop_path_rate=0.0,
        end_drop_path_rate=0.0,
        prenet_depth=1,
        prenet_layerdrop=0.0,
        prenet_dropout=0.0,
        decoder=None,
        num_extra_tokens=0,
        init_extra_token_zero=True,
        use_alibi_encoder=True,
        alibi_scale=1.0,
        alibi_max_pos=None,
        learned_alibi=False,
        learned_alibi_scale=False,
        learned_alibi_scale_per_head=False,
        learned_alibi_scale_per_layer=False,
        num_alibi_heads=2,
        model_depth=2,
        local_grad_mult=1.0,
        inverse_mask=False,
        keep_masked_pct=0.0,
        mask_noise_std=0.01,
        mask_prob=0.0,
        mask_length=5,
        mask_prob_min=None,
        mask_dropout=0.0,
        add_masks=False,
        remove_masks=False,
        mask_channel_prob=0.0,
        mask_channel_length=64,
        encoder_zero_mask=True,
        mask_prob_adjust=0.0,
    )
    conf = dict(
        embed_dim=32,
        num_heads=2,
        mlp_ratio=2.0,
        depth=2,
        layer_norm_first=False,
        norm_eps=1e-5,
        norm_affine=True,
        encoder_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        post_mlp_drop=0.0,
        start_drop_path_rate=0.0,
        end_drop_path_rate=0.0,
        dropout_input=0.0,
        average_top_k_layers=2,
        loss_beta=0.0,
        loss_scale=None,
        end_of_block_targets=False,
        clone_batch=1,
        layerdrop=0.0,
        normalize=True,
        modalities=dict(audio=audio),
    )
    config = {
        "model": "Emotion2vec",
        "model_conf": conf,
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "unknown", "split_with_space": True, "token_list": labels},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(Emotion2vec(model_conf=conf, vocab_size=len(labels)).state_dict(), folder / "model.pt")
    return folder
