"""Tiny randomly initialised experts of the real classes, saved the way real weights are published
(for tests and `coat-pipe bench extract --tiny`: no download)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

TINY_SPEECH = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16, 16, 16, 16, 16, 16, 16),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


def tiny_beats_config(finetuned: bool = False):  # noqa: ANN201 - a BeatsConfig
    from stages.extract.experts.beats_model import BeatsConfig

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


def make_tiny(name: str, root: Path) -> Path:
    """Write a tiny `name` expert under root/name in its official format; returns what --checkpoint takes."""
    torch.manual_seed(0)
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    if name in ("beats", "beats-tags"):
        from stages.extract.experts.beats_model import Beats

        cfg = tiny_beats_config(finetuned=name == "beats-tags")
        path = out / "BEATs_tiny.pt"
        torch.save({"cfg": dataclasses.asdict(cfg), "model": Beats(cfg).state_dict()}, path)
        return path
    if name == "whisper":
        from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

        config = WhisperConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            vocab_size=100,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            max_source_positions=1500,
            max_target_positions=32,
        )
        WhisperModel(config).save_pretrained(out)
        WhisperFeatureExtractor(feature_size=80).save_pretrained(out)
        return out
    if name in ("wavlm", "hubert", "mert", "wav2vec2-emotion"):
        from transformers import (
            HubertConfig,
            HubertModel,
            Wav2Vec2Config,
            Wav2Vec2FeatureExtractor,
            Wav2Vec2ForSequenceClassification,
            WavLMConfig,
            WavLMModel,
        )

        rate = 24000 if name == "mert" else 16000
        if name == "wavlm":  # layer-norm front end: runs batched with a mask
            model = WavLMModel(
                WavLMConfig(
                    **TINY_SPEECH,
                    feat_extract_norm="layer",
                    do_stable_layer_norm=True,
                    num_buckets=16,
                    max_bucket_distance=64,
                )
            )
        elif name == "wav2vec2-emotion":
            config = Wav2Vec2Config(
                **TINY_SPEECH,
                num_labels=4,
                id2label={0: "neu", 1: "hap", 2: "ang", 3: "sad"},
                label2id={"neu": 0, "hap": 1, "ang": 2, "sad": 3},
            )
            model = Wav2Vec2ForSequenceClassification(config)
        else:  # hubert, and mert (a HuBERT encoder published under MERT's own model type)
            model = HubertModel(HubertConfig(**TINY_SPEECH, feat_extract_norm="group"))
        model.save_pretrained(out)
        Wav2Vec2FeatureExtractor(sampling_rate=rate, do_normalize=name != "hubert").save_pretrained(out)
        if name == "mert":
            config = json.loads((out / "config.json").read_text())
            config.update(
                model_type="mert_model", architectures=["MERTModel"], auto_map={"AutoModel": "modeling_MERT.MERTModel"}
            )
            (out / "config.json").write_text(json.dumps(config))
        return out
    if name == "clap":
        from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

        audio = ClapAudioConfig(
            depths=[1, 1],
            num_attention_heads=[1, 2],
            patch_embeds_hidden_size=16,
            hidden_size=32,
            projection_dim=24,
            spec_size=256,
            num_mel_bins=64,
            window_size=8,
            mlp_ratio=2.0,
        )
        text = ClapTextConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            projection_dim=24,
            max_position_embeddings=64,
        )
        ClapModel(
            ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=24)
        ).save_pretrained(out)
        ClapFeatureExtractor(feature_size=64).save_pretrained(out)
        return out
    if name in ("emotion2vec", "emotion2vec-probs"):  # a FunASR model folder: config.yaml + model.pt
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
        (out / "config.yaml").write_text(yaml.safe_dump(config))
        torch.save(Emotion2vec(model_conf=conf, vocab_size=len(labels)).state_dict(), out / "model.pt")
        return out
    raise ValueError(name)
