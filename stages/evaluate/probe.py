"""Linear probes: how much of each expert's target the hidden states hold, layer by layer.

Positions, for every run:
  think   the K thinking positions. A slot's state predicts that slot's target, and the mean over the K
          states predicts the clip target. A run trained with --no-think is read with the block's
          tokens appended to its prompt. Those tokens are untrained (mean embedding rows), which
          shows what the same positions hold without the distillation.
  answer  the last prompt position, where the first answer token is read. This is the run's own
          prompt (with its block for CoAT, without one for --no-think). It predicts the clip target
          and, flattened, the K slot targets.

A probe is ridge regression on z-scored features, with alpha chosen by exact leave-one-out error
on its training rows; probability experts get a multinomial logistic probe instead. Scores are
5-fold cross-validated by clip, so no clip is ever on both sides: the R² of the out-of-fold
predictions pooled over the target's dimensions (variance-weighted), or the top-class accuracy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel

from stages.config_files import load_yaml
from stages.evaluate.answer import encode_prompts, for_inference, load_run
from stages.progress import console
from stages.train.batch import CoatSample, read_samples
from stages.train.bundle import bundle_dir
from stages.train.config import ModelConfig
from stages.train.model import CoatModel
from stages.train.targets import TargetSpec, pool_to_slots
from store_schema.corpus import read_corpus
from store_schema.errors import UserError
from store_schema.stats import read_stats

ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0, 1e4)
FOLDS = 5
MIN_PROBE_CLIPS = 10  # fewer clips than this leave the folds too small to fit a probe on


@dataclass
class ProbeResult:
    scores: dict[str, dict[str, list[float]]]  # run -> "expert/target@position" -> score per layer
    header: list[str]
    rows: list[tuple[str, ...]]


def load_with_block(run: Path, k: int, device: str) -> CoatModel:
    """A --no-think run's model with the K-token block added to its tokenizer (untrained rows)."""
    path = bundle_dir(run)
    meta = load_yaml((path / "config.yaml").read_text())
    config = ModelConfig.model_validate(meta["model"] | {"no_think": False, "think_tokens": k})
    backbone, source, base, processor, think = CoatModel.load_base(config)
    model = PeftModel.from_pretrained(base, str(path / "adapter"))
    return for_inference(CoatModel(config, backbone, source, model, processor, think, {}), device)


@torch.inference_mode()
def hidden_at(model: CoatModel, samples: list[CoatSample], batch_size: int = 8) -> tuple[np.ndarray | None, np.ndarray]:
    """(layers, N, K, H) states at the thinking positions (None without a block), (layers, N, H) at the
    last prompt position."""
    device = next(model.parameters()).device
    think, answer = [], []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        inputs = encode_prompts(model, [s.wave for s in batch], [s.question for s in batch])
        inputs = {k: v.to(device) for k, v in inputs.items()}
        states = model.model(**inputs, output_hidden_states=True).hidden_states  # left-padded: -1 is last
        answer.append(torch.stack([h[:, -1] for h in states]).float().cpu())
        if model.think is not None:
            think.append(torch.stack([model.thinking_states(h, inputs["input_ids"]) for h in states]).float().cpu())
    slots = torch.cat(think, dim=1).numpy() if think else None
    return slots, torch.cat(answer, dim=1).numpy()


def ridge_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ridge on z-scored features with alpha chosen by exact leave-one-out error (from one SVD).
    Returns (weights, feature mean, feature std, target mean)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    y_mean = y.mean(0)
    yc = y - y_mean
    u, sv, vt = np.linalg.svd(z, full_matrices=False)
    uty = u.T @ yc
    best, best_error = ALPHAS[0], np.inf
    for alpha in ALPHAS:
        shrink = sv**2 / (sv**2 + alpha)
        leverage = (u**2) @ shrink + 1.0 / len(x)  # hat-matrix diagonal, the intercept included
        residual = (yc - u @ (shrink[:, None] * uty)) / np.maximum(1 - leverage, 1e-6)[:, None]
        error = float((residual**2).sum())
        if error < best_error:
            best, best_error = alpha, error
    weights = vt.T @ ((sv / (sv**2 + best))[:, None] * uty)
    return weights, mu, sd, y_mean


def r2(pred: np.ndarray, y: np.ndarray) -> float:
    """Variance-weighted R² over the columns: 1 - total squared error / total variance, so a column
    that barely varies cannot dominate the score."""
    variance = float(((y - y.mean(0)) ** 2).sum())
    if variance <= 1e-12:
        return float("nan")
    return 1.0 - float(((pred - y) ** 2).sum()) / variance


def logistic_fit(x: np.ndarray, y: np.ndarray) -> tuple[torch.nn.Linear, np.ndarray, np.ndarray]:
    """A multinomial logistic probe on the targets' top class (L2-regularised, LBFGS)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xa = torch.tensor((x - mu) / sd, dtype=torch.float32)
    ya = torch.tensor(y.argmax(-1))
    layer = torch.nn.Linear(xa.shape[1], y.shape[1])
    optimizer = torch.optim.LBFGS(layer.parameters(), max_iter=200)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xa), ya) + 1e-3 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return layer, mu, sd


def clip_folds(clips: int) -> np.ndarray:
    """Clip -> cross-validation fold, FOLDS folds of (nearly) equal size, in a fixed random order."""
    return np.random.default_rng(0).permutation(clips) % FOLDS


def slot_folds(fold: np.ndarray, k: int) -> np.ndarray:
    """Row -> fold for the K slot rows of each clip: a clip's slots share its fold, so no probe is tested
    on a clip it was fit on (rows of one clip are near-duplicates, and would leak)."""
    return np.repeat(fold, k)


def cross_validated(kind: str, x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> float:
    """Out-of-fold score: every row is predicted by a probe fit without its clip."""
    if kind == "probs":
        correct = np.zeros(len(x), dtype=bool)
        for f in np.unique(fold):
            test = fold == f
            layer, mu, sd = logistic_fit(x[~test], y[~test])
            with torch.no_grad():
                logits = layer(torch.tensor((x[test] - mu) / sd, dtype=torch.float32))
            correct[test] = logits.argmax(-1).numpy() == y[test].argmax(-1)
        return float(correct.mean())
    pred = np.zeros_like(y, dtype=np.float64)
    for f in np.unique(fold):
        test = fold == f
        w, mu, sd, y_mean = ridge_fit(x[~test].astype(np.float64), y[~test].astype(np.float64))
        pred[test] = ((x[test] - mu) / sd) @ w + y_mean
    return r2(pred, y)


def _targets(spec: TargetSpec, samples: list[CoatSample], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D) clip targets, (N, K, D) slot targets, (N, K, D) slot mask; standardised like training."""
    clips = np.stack([spec.standardise(s.clip[spec.expert], clip=True) for s in samples])
    pooled = [pool_to_slots(s.frames[spec.expert], k, spec.kind) for s in samples]
    slots = np.stack([spec.standardise(p[0]) for p in pooled])
    return clips, slots, np.stack([p[1] for p in pooled])


def probe_one(kind: str, features: np.ndarray, targets: np.ndarray, mask: np.ndarray, fold: np.ndarray) -> float:
    """One probe: rows of `features` (R, H) → `targets` (R, D), cross-validated over clips (`fold` per
    row). Columns defined on the same rows are fit together; their scores are averaged by column count."""
    if kind == "probs":
        return cross_validated(kind, features, targets, fold)
    scores, weights = [], []
    patterns = {tuple(column) for column in mask.T}
    for pattern in patterns:
        rows = np.array(pattern, dtype=bool)
        columns = np.flatnonzero((mask.T == rows).all(axis=1))
        if rows.sum() < 2 * FOLDS:
            continue
        score = cross_validated(kind, features[rows], targets[rows][:, columns], fold[rows])
        if np.isfinite(score):
            scores.append(score)
            weights.append(len(columns))
    return float(np.average(scores, weights=weights)) if scores else float("nan")


def run_probes(
    runs: list[Path],
    corpus: Path | str,
    experts: list[str],
    out: Path,
    limit: int | None = None,
    device: str = "cpu",
) -> ProbeResult:
    """Probe every run on the corpus's clips (a folder or a URL); write probes.json, probes.md and
    probe_layers.png to `out`."""
    corpus = read_corpus(corpus).root
    specs = {}
    for expert in experts:
        try:
            stats = read_stats(corpus, expert)
        except ValueError as e:
            raise UserError(f"{e}; run coat-pipe store check {corpus}") from None
        if stats is None:
            raise UserError(f"{corpus}: no `{expert}` in the store; run `coat-pipe extract --expert {expert}` first")
        specs[expert] = TargetSpec.from_stats(stats)
    samples = read_samples(corpus, experts, limit)
    if len(samples) < MIN_PROBE_CLIPS:
        raise UserError(f"{corpus}: {len(samples)} usable clips; probes need at least {MIN_PROBE_CLIPS}")
    fold = clip_folds(len(samples))
    models = {run: load_run(run, device) for run in runs}
    ks = {len(m.think.slots) for m in models.values() if m.think is not None}
    k = ks.pop() if len(ks) == 1 else 32  # baselines alone (or mixed K) are read with a 32-token block
    scores: dict[str, dict[str, list[float]]] = {}
    for run, model in models.items():
        console.print(f"probing {run} on {len(samples)} clips")
        if model.think is not None:  # one pass: the block ends the run's own prompt
            think_states, answer_states = hidden_at(model, samples)
        else:  # the block appended for its positions; the answer position from the run's own prompt
            think_states, _ = hidden_at(load_with_block(run, k, device), samples)
            _, answer_states = hidden_at(model, samples)
        assert think_states is not None
        table: dict[str, list[float]] = {}
        for name, spec in specs.items():
            clips, slots, mask = _targets(spec, samples, k)
            n, kk, d = slots.shape
            clip_mask = np.ones_like(clips, dtype=bool)
            if spec.kind == "pitch":
                clip_mask[:, 0] = np.array([s.clip[name][1] > 0 for s in samples])
            slot_fold = slot_folds(fold, kk)
            for layer in range(len(answer_states)):
                per_slot = think_states[layer].reshape(n * kk, -1)
                results = {
                    "slots@think": probe_one(
                        spec.kind, per_slot, slots.reshape(n * kk, d), mask.reshape(n * kk, d), slot_fold
                    ),
                    "clip@think": probe_one(spec.kind, think_states[layer].mean(1), clips, clip_mask, fold),
                    "clip@answer": probe_one(spec.kind, answer_states[layer], clips, clip_mask, fold),
                    "slots@answer": probe_one(
                        "embedding", answer_states[layer], slots.reshape(n, kk * d), mask.reshape(n, kk * d), fold
                    ),
                }
                for key, value in results.items():
                    table.setdefault(f"{name}/{key}", []).append(value)
        scores[str(run)] = table
    return _write(scores, out)


def _write(scores: dict[str, dict[str, list[float]]], out: Path) -> ProbeResult:
    from stages.evaluate.plots import probe_layers_png

    out.mkdir(parents=True, exist_ok=True)
    runs = list(scores)
    names = [Path(r).name for r in runs]
    header = ["expert / target @ position", *(f"{n} best (layer)" for n in names)]
    rows = []
    for key in scores[runs[0]]:
        cells = []
        for run in runs:
            values = np.array(scores[run][key], dtype=float)
            best = int(np.nanargmax(values)) if np.isfinite(values).any() else -1
            cells.append(f"{values[best]:.3f} ({best})" if best >= 0 else "n/a")
        rows.append((key, *cells))
    (out / "probes.json").write_text(json.dumps(scores, indent=1))
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(runs)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    (out / "probes.md").write_text("\n".join(lines) + "\n")
    curves = {f"{Path(r).name} {key}": v for r in runs for key, v in scores[r].items() if key.startswith("pitch/")}
    curves = curves or {f"{Path(r).name} {key}": v for r in runs for key, v in scores[r].items()}
    probe_layers_png(curves, out / "probe_layers.png", "probe score by layer")
    return ProbeResult(scores, header, rows)
