"""What the thinking block holds: the heads' predictions from the block against the experts' targets.

The targets are computed fresh: the experts run on the clip with their default options, and the
frames are pooled to the store rate and then to the K slots exactly as training pooled them. The
values are compared in the experts' own units: cents and voicing for pitch, log-mel for mel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stages.evaluate.answer import encode_prompts
from stages.extract.experts import load_expert
from stages.extract.pooling import pool_to_store_rate
from stages.train.backbones.base import SAMPLE_RATE
from stages.train.model import CoatModel
from stages.train.targets import STANDARDISED, TargetSpec, pool_to_slots
from store_schema.layout import DEFAULT_STORE_RATE


@dataclass
class Readout:
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # expert -> (K, D) in the expert's units
    target: dict[str, np.ndarray] = field(default_factory=dict)  # expert -> (K, D), None where undefined
    lines: list[str] = field(default_factory=list)  # what the CLI prints


def to_units(spec: TargetSpec, values: np.ndarray, clip: bool = False) -> np.ndarray:
    """Undo the standardisation the heads were trained on; pitch voicing logits become probabilities."""
    mean, std = (spec.clip_mean, spec.clip_std) if clip else (spec.frame_mean, spec.frame_std)
    out = values.astype(np.float32).copy()
    if spec.kind in STANDARDISED:
        out = out * std + mean
    elif spec.kind == "pitch":
        out[..., 0] = out[..., 0] * std[0] + mean[0]
        out[..., 1] = 1 / (1 + np.exp(-out[..., 1]))
    elif spec.kind in ("probs", "logits"):
        out = np.exp(out - out.max(-1, keepdims=True)) if spec.kind == "probs" else 1 / (1 + np.exp(-out))
        out = out / out.sum(-1, keepdims=True) if spec.kind == "probs" else out
    return out


@torch.inference_mode()
def head_predictions(model: CoatModel, wave: np.ndarray, question: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """expert -> ((K, D) slots, (D,) clip) in the expert's units, read from the block by the heads."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in encode_prompts(model, [wave], [question]).items()}
    out = model.model(**inputs, output_hidden_states=True)
    states = model.thinking_states(out.hidden_states[model.think_layer], inputs["input_ids"])
    result = {}
    for name, head in model.heads.items():
        slots, clip = head(states.to(head.proj_in.weight.dtype))
        spec = model.specs[name]
        result[name] = (
            to_units(spec, slots[0].float().cpu().numpy()),
            to_units(spec, clip[0].float().cpu().numpy(), True),
        )
    return result


def fresh_targets(name: str, wave: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(K, D) slot targets, (K, D) mask and the expert's fingerprint; None if the expert cannot run here."""
    try:
        expert = load_expert(name)
    except Exception:  # noqa: BLE001 - a model expert without local weights: show the prediction alone
        return None
    from stages.audio import resample

    audio = resample(wave, SAMPLE_RATE, expert.sample_rate)
    frames = expert([audio])[0]
    spec = expert.spec(DEFAULT_STORE_RATE)
    pooled = pool_to_store_rate(
        frames, expert.frame_times(len(frames)), len(audio) / expert.sample_rate, DEFAULT_STORE_RATE, spec.kind
    )
    slots, mask = pool_to_slots(pooled, k, spec.kind)
    return slots, mask, spec.fingerprint


def readout_clip(model: CoatModel, wave: np.ndarray, question: str, png: Path) -> Readout:
    """Predictions vs fresh targets for every head; a picture with a panel per expert."""
    assert model.think is not None
    k = len(model.think.slots)
    report = Readout()
    for name, (slots, clip) in head_predictions(model, wave, question).items():
        spec = model.specs[name]
        report.predicted[name] = slots
        fresh = fresh_targets(name, wave, k)
        if fresh is None:
            report.lines.append(f"{name}: no local weights to compute targets; predictions only")
        else:
            target, mask, fingerprint = fresh
            report.target[name] = np.where(mask, target, np.nan)
            if fingerprint != spec.fingerprint:
                report.lines.append(
                    f"{name}: the model was trained on targets made with other options; compare loosely"
                )
        if spec.kind == "pitch":
            hz = 10.0 * 2 ** (clip[0] / 1200)  # cents above 10 Hz (store_schema's reference)
            report.lines.append(f"{name}: clip mean {hz:.0f} Hz predicted, voiced {100 * clip[1]:.0f} % of the time")
        elif spec.kind in ("probs", "logits"):
            top = np.argsort(clip)[::-1][:5]
            report.lines.append(f"{name}: top classes " + ", ".join(f"#{i} {clip[i]:.2f}" for i in top))
        elif name in report.target:
            error = np.nanmean(np.abs(report.target[name] - slots))
            report.lines.append(f"{name}: mean absolute slot error {error:.2f} (expert units)")
    _plot(report, model, png)
    return report


def _plot(report: Readout, model: CoatModel, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report.predicted)
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.8 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        spec, pred = model.specs[name], report.predicted[name]
        target = report.target.get(name)
        if spec.kind == "pitch":
            slots = np.arange(len(pred))
            ax.plot(slots, 10.0 * 2 ** (pred[:, 0] / 1200), "o-", label="predicted from the block")
            if target is not None:
                ax.plot(slots, 10.0 * 2 ** (target[:, 0] / 1200), "s--", label="expert (swift-f0)")
            ax.set_yscale("log")
            ax.set_ylabel("Hz")
            ax.legend(fontsize=8)
        else:
            shown = pred.T if target is None else np.concatenate([np.nan_to_num(target.T), pred.T], axis=1)
            ax.imshow(shown, aspect="auto", origin="lower", cmap="magma")
            if target is not None:
                ax.axvline(len(pred) - 0.5, color="white")
            ax.set_ylabel("dimension")
        ax.set_title(
            f"{name}: "
            + ("expert target | predicted" if target is not None and spec.kind != "pitch" else "thinking slots")
        )
        ax.set_xlabel("slot")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
