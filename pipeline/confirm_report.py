"""The confirmatory design's report: the registered analysis (docs/EXPERIMENTS.md, fourth registration),
computed from the runs' own files.

In order: does the miniature learn (validation curves of every arm against chance)? Does the positive
control work (oracle − control on the test split; the gate)? Only if it does: the primary verdict, CoAT −
control over every test item, seeds as the unit (exact sign-flip test over the per-seed differences), with
its crossed bootstrap interval and the minimum detectable effect.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.quickstart_report import (
    ALL,
    closing_sections,
    delta_cell,
    markdown_table,
    mean_sd,
    numerics,
    twin_line,
)
from pipeline.quickstart_setup import PITCH_CLASS_EXPERTS, ConfirmConfig, QuickstartLayout, arm_label, dose_arm
from stages.evaluate.paired import PairedDelta, compare_arms, read_verdicts
from stages.evaluate.seed_stats import holm, minimum_detectable_effect, sign_flip_p
from stages.progress import print_table

ALPHA = 0.05


@dataclass
class ConfirmResults:
    seeds: int
    tasks: list[str]  # the question types, then ALL
    chance: dict[str, float]  # test split: question type (and ALL) -> the majority answer's share
    val_chance: float  # validation split, all questions
    accuracy: dict[str, list[dict[str, float]]]  # arm -> per seed: question type -> test accuracy
    contrasts: dict[tuple[str, str], dict[str, PairedDelta]]  # (a, b) -> row -> b − a
    curves: dict[str, list[list[tuple[int, float]]]]  # arm -> per seed: (step, validation accuracy)
    lm_end: dict[str, list[float]]  # arm -> per seed: mean LM loss over the last tenth of training
    gate: tuple[str, str] = ConfirmConfig.gate  # the design's registered contrasts, (a, b) for b − a
    primary: tuple[str, str] = ConfirmConfig.primary


def majority_share(references: list[tuple[str, str]]) -> dict[str, float]:
    """(task, answer) pairs -> per task and over all: the share of always giving the most common answer."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for task, answer in references:
        counts[task][answer] += 1
    shares = {task: max(c.values()) / sum(c.values()) for task, c in counts.items()}
    return shares | {ALL: sum(max(c.values()) for c in counts.values()) / len(references)}


def read_confirm(q: QuickstartLayout, resamples: int = 10_000) -> ConfirmResults:
    """Each run's test eval (predictions.jsonl, metrics.json) and metrics.jsonl (training, validation)."""
    from stages.lab.synth_benchmark import load_synth

    chance = majority_share([(i.groups["task"], i.reference) for i in load_synth(q.heldout)])
    val_chance = majority_share([(i.groups["task"], i.reference) for i in load_synth(q.validation)])[ALL]  # type: ignore[attr-defined]
    arms, seeds = q.cfg.arms, q.cfg.seeds
    accuracy: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    curves: dict[str, list[list[tuple[int, float]]]] = {a: [] for a in arms}
    lm_end: dict[str, list[float]] = {a: [] for a in arms}
    for arm in arms:
        for seed in range(seeds):
            run = q.runs / f"{arm}-seed{seed}"
            metrics = json.loads((run / "eval" / "metrics.json").read_text())
            row = {task: float(t["accuracy"]) for task, t in metrics["breakdowns"]["task"].items()}
            accuracy[arm].append(row | {ALL: float(metrics["accuracy"])})
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
            curves[arm].append(
                [(r["step"], r["val/validation/accuracy"]) for r in rows if "val/validation/accuracy" in r]
            )
            train = [r["lm"] for r in rows if "lm" in r]
            lm_end[arm].append(float(np.mean(train[-max(1, len(train) // 10) :])))
    verdicts = {a: [read_verdicts(q.runs / f"{a}-seed{s}" / "eval", "generate") for s in range(seeds)] for a in arms}
    contrasts = {}
    for a, b in q.cfg.contrasts:
        rows = compare_arms(verdicts[a], verdicts[b], resamples)
        contrasts[a, b] = {ALL if r.row == "overall" else r.row.removeprefix("task: "): r for r in rows}
    tasks = [*sorted(t for t in accuracy[arms[0]][0] if t != ALL), ALL]
    gate, primary = q.cfg.gate, q.cfg.primary
    return ConfirmResults(seeds, tasks, chance, val_chance, accuracy, contrasts, curves, lm_end, gate, primary)


def significant_gain(d: PairedDelta) -> bool:
    return d.p_seeds is not None and d.p_seeds < ALPHA and d.delta > 0


def verdict(r: ConfirmResults) -> list[str]:
    """The registered decision, in sentences: the gate first; the CoAT verdict only when the gate passes."""
    gate, primary = r.contrasts[r.gate][ALL], r.contrasts[r.primary][ALL]
    mde = 100 * minimum_detectable_effect(primary.components, r.seeds, primary.items) if primary.components else None
    oracle, control = arm_label(r.gate[1]), arm_label(r.gate[0])
    lines = [
        f"Positive control: {oracle} − {control} on all {gate.items} test items {delta_cell(gate)} points, "
        f"sign-flip p over {r.seeds} seeds {_p(gate)}."
    ]
    if not significant_gain(gate):
        lines.append(
            f"The {oracle} does not beat the {control}: in this miniature even the true targets at the block do "
            "not reach the answers measurably, so it cannot show CoAT's effect. No CoAT verdict is given."
        )
        return lines
    lines.append(
        f"The {oracle} beats the {control}: the block can carry the targets' information into the answers here."
    )
    direction = "better than" if primary.delta > 0 else "worse than"
    found = primary.p_seeds is not None and primary.p_seeds < ALPHA
    b, a = arm_label(r.primary[1]), arm_label(r.primary[0])
    lines.append(
        f"Primary ({b} − {a}, all test items): {delta_cell(primary)} points, sign-flip p {_p(primary)}; "
        + (
            f"{b} is {direction} {a} at the 5 % level."
            if found
            else f"no detectable difference at the 5 % level (this design detects |Δ| ≥ {mde:.1f} points "
            "with 80 % power, from its observed variance components)."
        )
    )
    if r.primary[0] == r.gate[0]:  # both against the control: how much of the bound the supervision reaches
        share = (primary.delta / gate.delta) if gate.delta > 0 else float("nan")
        lines.append(f"{b} recovers {100 * share:.0f} % of the {oracle}'s gain over the {control} (point estimates).")
    return lines


def _p(d: PairedDelta) -> str:
    return "—" if d.p_seeds is None else f"{d.p_seeds:.3g}"


def accuracy_rows(r: ConfirmResults, arms: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [
        (task, f"{100 * r.chance[task]:.1f}", *(mean_sd([a[task] for a in r.accuracy[arm]], 100) for arm in arms))
        for task in r.tasks
    ]


def contrast_rows(r: ConfirmResults) -> list[tuple[str, ...]]:
    """(contrast, question type, Δ [interval], p seeds (Holm over the types), McNemar p)."""
    types = [t for t in r.tasks if t != ALL]
    rows = []
    for a, b in r.contrasts:
        table = r.contrasts[a, b]
        adjusted = dict(zip(types, holm([1.0 if table[t].p_seeds is None else table[t].p_seeds for t in types])))
        for task in r.tasks:
            d = table[task]
            p = _p(d) + (f" ({adjusted[task]:.3g})" if task != ALL and d.p_seeds is not None else "")
            rows.append((f"{arm_label(b)} − {arm_label(a)}", task, delta_cell(d), p, f"{d.p_mcnemar:.3g}"))
    return rows


def learns_rows(r: ConfirmResults, arm: str = "base") -> list[tuple[str, ...]]:
    """Per question type: the arm's test accuracy above the type's chance, mean over seeds, and the exact
    sign-flip p of the per-seed differences (does it learn the type? descriptive, the sixth registration)."""
    rows = []
    for task in r.tasks:
        above = [100 * (seed[task] - r.chance[task]) for seed in r.accuracy[arm]]
        p = f"{sign_flip_p(above):.3g}" if r.seeds > 1 else "—"
        rows.append(
            (
                task,
                f"{100 * r.chance[task]:.1f}",
                mean_sd([s[task] for s in r.accuracy[arm]], 100),
                f"{np.mean(above):+.1f}",
                p,
            )
        )
    return rows


LEARNS_HEADER = ["question type", "chance %", "baseline %", "above chance, points", "p seeds"]


# --- the fifth registration's λ dose-response (secondary; only when the design has --doses arms) ---------
def dose_arms(cfg: ConfirmConfig) -> dict[float, str]:
    """λ -> arm, in λ order: the control (0), CoAT (its λ) and every --doses arm."""
    arms = {0.0: "control", cfg.training.model.distill_weight: "coat"} | {w: dose_arm(w) for w in cfg.doses}
    return dict(sorted(arms.items()))


def least_squares_slope(x: list[float], y: list[float]) -> float:
    """The slope of the least-squares line of y on x."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    centred = xs - xs.mean()
    return float((centred * (ys - ys.mean())).sum() / (centred**2).sum())


def dose_slopes(r: ConfirmResults, by_weight: dict[float, str]) -> list[float]:
    """Per seed, the slope of test accuracy over all items (points) on λ: the registered outcome."""
    weights = list(by_weight)
    return [
        least_squares_slope(weights, [100 * r.accuracy[arm][seed][ALL] for arm in by_weight.values()])
        for seed in range(r.seeds)
    ]


def dose_verdict(slopes: list[float]) -> str:
    p = sign_flip_p(slopes)
    direction = "rises" if np.mean(slopes) > 0 else "falls"
    found = p < ALPHA
    return (
        f"Per-seed slope of test accuracy on λ: {np.mean(slopes):+.2f} points per unit λ (seeds: "
        + ", ".join(f"{x:+.2f}" for x in slopes)
        + f"); exact sign-flip p over {len(slopes)} seeds {p:.3g}: "
        + (f"dose-dependent, accuracy {direction} with λ." if found else "no detectable trend at the 5 % level.")
    )


def dose_png(r: ConfirmResults, by_weight: dict[float, str], path: Path) -> Path:
    fig, ax = new_axes((5.6, 3.6))
    weights = list(by_weight)
    values = 100 * np.array([[r.accuracy[arm][seed][ALL] for arm in by_weight.values()] for seed in range(r.seeds)])
    for seed, row in enumerate(values):
        ax.plot(weights, row, "-o", color="C0", alpha=0.35, ms=3, label="one seed" if seed == 0 else None)
    ax.plot(weights, values.mean(0), "-o", color="C3", lw=2, label="mean over seeds")
    ax.axhline(100 * r.chance[ALL], color="black", ls="--", lw=1, label="chance")
    ax.set_xscale("symlog", linthresh=0.3)
    ax.set_xticks(weights, [f"{w:g}" for w in weights])
    ax.set_xlabel("λ (distillation weight; 0 = the control)")
    ax.set_ylabel("test accuracy (%), all questions")
    return saved(fig, ax, path)


def dose_section(r: ConfirmResults, cfg: ConfirmConfig, figures: Path) -> list[str]:
    """The dose-response's report section (empty without --doses arms)."""
    if not cfg.doses:
        return []
    by_weight = dose_arms(cfg)
    header = ["λ", "arm", *(f"{t} %" for t in r.tasks)]
    rows = [
        (f"{w:g}", arm_label(arm), *(mean_sd([s[t] for s in r.accuracy[arm]], 100) for t in r.tasks))
        for w, arm in by_weight.items()
    ]
    dose_png(r, by_weight, figures / "dose.png")
    return [
        "## λ dose-response (fifth registration, secondary)",
        "Test accuracy by λ, mean ± sd over seeds. Outcome: per seed the least-squares slope of accuracy over all "
        "test items on λ; test: the exact two-sided sign-flip test over the seeds' slopes, α = 0.05. It does not "
        "change the verdict above.",
        markdown_table(header, rows),
        dose_verdict(dose_slopes(r, by_weight)) if r.seeds > 1 else "One seed: no slope to test.",
        "![dose-response](report/dose.png)",
    ]


def new_axes(size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def saved(fig: Any, ax: Any, path: Path) -> Path:
    """The figure with its legend, written to `path` and closed."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def validation_png(r: ConfirmResults, arms: tuple[str, ...], path: Path) -> Path:
    fig, ax = new_axes((6.4, 3.8))
    curves = any(len(c) > 1 for runs in r.curves.values() for c in runs)
    for index, arm in enumerate(arms):
        for seed, curve in enumerate(r.curves[arm]):
            if curve:
                steps, values = zip(*curve)
                label = arm_label(arm) if seed == 0 else None
                # validation at the end only: one column of seeds per arm instead of a curve
                x = steps if curves else [index + 0.06 * (seed - (r.seeds - 1) / 2)]
                ax.plot(x, 100 * np.array(values), "-o", color=f"C{index}", alpha=0.6, ms=4, label=label)
    ax.axhline(100 * r.val_chance, color="black", ls="--", lw=1, label="chance")
    if not curves:
        ax.set_xticks(range(len(arms)), [arm_label(a) for a in arms])
    ax.set_xlabel("optimizer step" if curves else f"arm (each dot a seed, at step {r.curves[arms[0]][0][-1][0]})")
    ax.set_ylabel("validation accuracy (%), likelihood")
    ax.set_title(f"validation split, every seed ({r.seeds})", fontsize=10)
    return saved(fig, ax, path)


def test_accuracy_png(r: ConfirmResults, arms: tuple[str, ...], path: Path) -> Path:
    x, width = np.arange(len(r.tasks)), 0.8 / len(arms)
    fig, ax = new_axes((7.5, 3.8))
    for index, arm in enumerate(arms):
        values = 100 * np.array([[s[t] for t in r.tasks] for s in r.accuracy[arm]])
        spread = values.std(0, ddof=1) if r.seeds > 1 else None
        ax.bar(
            x + (index - (len(arms) - 1) / 2) * width,
            values.mean(0),
            width,
            yerr=spread,
            capsize=2,
            label=arm_label(arm),
        )
    ax.scatter(x, [100 * r.chance[t] for t in r.tasks], marker="_", s=400, color="black", zorder=3, label="chance")
    ax.set_xticks(x, r.tasks)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%), likelihood")
    ax.set_title(f"mean ± sd over {r.seeds} seeds", fontsize=10)
    return saved(fig, ax, path)


def arm_descriptions(cfg: ConfirmConfig) -> dict[str, str]:
    """What each arm is, in a few words, for the report's setup."""
    model = cfg.training.model
    oracle = "a learned linear map of the clip's true slot targets{} added to the block's input embeddings"
    pc_targets = f" ({', '.join(PITCH_CLASS_EXPERTS)})"
    return {
        "base": "no block",
        "control": f"K = {model.think_tokens} block and heads, λ = 0",
        "coat": f"λ = {model.distill_weight} on {', '.join(cfg.training.experts)}",
        "oracle": f"the control plus {oracle.format('')}, in training and at test",
        "coat-pc": f"λ = {model.distill_weight} on {', '.join(PITCH_CLASS_EXPERTS)} (pitch-class: the pitch "
        "expert's cents and voicing plus the sine and cosine of 2π · (cents mod 1200) / 1200)",
        "oracle-pc": f"the control plus {oracle.format(pc_targets)}, in training and at test",
    }


CONTRAST_HEADER = ["contrast", "question type", "Δ points [95 % interval]", "p seeds (Holm)", "McNemar p"]


def write_confirm_report(q: QuickstartLayout, r: ConfirmResults, timings: dict[str, float], wall_s: float) -> Path:
    import torch

    cfg, train, arms = q.cfg, q.cfg.training, q.cfg.arms
    figures = q.out / "report"
    figures.mkdir(parents=True, exist_ok=True)
    validation_png(r, arms, figures / "validation.png")
    test_accuracy_png(r, arms, figures / "test_accuracy.png")
    accuracy_header = ["question type", "chance %", *(f"{arm_label(a)} %" for a in arms)]
    sections = [
        "# coat-pipe quickstart --confirm: the registered analysis",
        f"Generated by `coat-pipe quickstart --confirm --out {q.out}` from the files under `{q.out}` (do not "
        "edit; run the command again). Registered in docs/EXPERIMENTS.md before any run of this design.",
        f"Machine: {platform.node()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, torch "
        f"{torch.__version__}. Numerics: {numerics(cfg.threads_per_rank)}. Wall time {sum(timings.values()):.0f} s "
        f"over the invocations that built this folder (the last one: {wall_s:.0f} s).",
        "## Verdict",
        "\n\n".join(verdict(r)),
        "## Does the miniature learn? (validation split)",
        f"{cfg.validation_clips} validation clips (synth seed 2), scored by likelihood "
        + (f"every {train.eval_every} steps and " if train.eval_every else "")
        + f"at the end of every run; chance {100 * r.val_chance:.1f} %. Final "
        "validation accuracy, mean ± sd over seeds: "
        + ", ".join(f"{arm_label(a)} {mean_sd([c[-1][1] for c in r.curves[a] if c], 100)} %" for a in arms)
        + ". Training LM loss over the last tenth of the steps (per answer token): "
        + ", ".join(f"{arm_label(a)} {statistics.mean(r.lm_end[a]):.3f}" for a in arms)
        + ".",
        "![validation accuracy](report/validation.png)",
        "## Test accuracy by question type",
        f"{cfg.heldout_clips} test clips (synth seed 7), scored once per run by likelihood (the most likely of "
        "the question type's answers). Mean ± sd over seeds; chance is always giving the most common answer.",
        markdown_table(accuracy_header, accuracy_rows(r, arms)),
        "![test accuracy](report/test_accuracy.png)",
        *(
            [
                "Does the baseline learn each type? Its test accuracy above the type's chance; p: the exact "
                "sign-flip test over the seeds' differences from chance (descriptive).",
                markdown_table(LEARNS_HEADER, learns_rows(r)),
            ]
            if "base" in arms
            else []
        ),
        "## Contrasts",
        "Paired by item and seed. Δ [95 % bootstrap interval, resampling seeds and items]; *p seeds*: the exact "
        "sign-flip test over the per-seed differences, seeds as the unit (Holm-adjusted over the question "
        "types in brackets); *McNemar p*: discordant items of all seeds pooled, conditional on these trained "
        "models (descriptive only).",
        markdown_table(CONTRAST_HEADER, contrast_rows(r)),
        *dose_section(r, cfg, figures),
        "## Setup",
        f"Every arm: the tiny Qwen2-Audio twin, LoRA rank {train.model.lora_rank} on the language model, the "
        f"projector trained ({train.model.train_projector}), the audio encoder {train.model.train_audio_encoder}, "
        f"{train.steps} steps of {cfg.ranks} DeepSpeed ZeRO-2 CPU ranks × {train.batch_size} clips, lr {train.lr}; "
        f"{cfg.train_clips} training clips (synth seed 0) of {', '.join(cfg.tasks)}"
        + (f", every clip of every split {cfg.clip_seconds:g} s long" if cfg.clip_seconds else "")
        + f", the twin's window {cfg.window_s} s. "
        + "; ".join(f"{arm_label(a)}: {what}" for a, what in arm_descriptions(cfg).items() if a in arms)
        + (f"; CoAT λ=…: CoAT at λ {', '.join(f'{w:g}' for w in cfg.doses)}." if cfg.doses else "."),
        twin_line(q),
        *closing_sections(q, timings),
    ]
    report = q.out / "report.md"
    report.write_text("\n\n".join(sections) + "\n")
    print_table(f"test accuracy, likelihood, mean ± sd over {r.seeds} seeds", accuracy_header, accuracy_rows(r, arms))
    print_table("contrasts", CONTRAST_HEADER, contrast_rows(r))
    for line in verdict(r):
        print(line)
    return report
