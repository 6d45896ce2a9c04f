"""The quickstart's report: tables and pictures computed from the runs' own files, never edited by hand.

Accuracy is per question type on the held-out split, as mean ± sd over seeds (sd with n - 1; a single
seed shows the mean alone). Δ is CoAT minus the baseline of the same seed, then averaged.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.progress import console, print_table

if TYPE_CHECKING:
    from pipeline.quickstart import Quickstart

ALL = "all questions"
READOUT_TASK = "pitch_direction"  # a question whose answer is in the pitch contour the block should hold


def mean_sd(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """Mean ± sd over seeds as "61.2 ± 3.4", or "61.2" for a single value."""
    if len(values) == 1:
        return f"{scale * values[0]:.{digits}f}"
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * statistics.stdev(values):.{digits}f}"


def accuracies(q: Quickstart, variant: str) -> list[dict[str, float]]:
    """Per seed: question type (and ALL) -> held-out accuracy, read from the run's eval/metrics.json."""
    per_seed = []
    for seed in range(q.cfg.seeds):
        metrics = json.loads((q.runs / f"{variant}-seed{seed}" / "eval" / "metrics.json").read_text())
        row = {task: float(m["accuracy"]) for task, m in metrics["breakdowns"]["task"].items()}
        per_seed.append(row | {ALL: float(metrics["accuracy"])})
    return per_seed


def chance_levels(q: Quickstart) -> dict[str, float]:
    """Per question type, the accuracy of always giving that type's most common held-out answer."""
    answers: dict[str, Counter] = defaultdict(Counter)
    tasks = task_of_clip(q)
    for line in (q.runs / "coat-seed0" / "eval" / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        answers[tasks[row["id"]]][row["reference"]] += 1
    levels = {task: max(c.values()) / sum(c.values()) for task, c in answers.items()}
    levels[ALL] = sum(max(c.values()) for c in answers.values()) / sum(sum(c.values()) for c in answers.values())
    return levels


def task_of_clip(q: Quickstart) -> dict[str, str]:
    """Held-out clip key -> its question type, from the tars' json."""
    from store_schema.corpus import iter_tar_samples, read_corpus

    corpus = read_corpus(q.heldout)
    tasks = {}
    for shard in corpus.shards:
        for raw in iter_tar_samples(corpus.tar_path(shard)):
            tasks[raw["__key__"]] = json.loads(raw["json"])["task"]
    return tasks


def accuracy_rows(q: Quickstart) -> list[tuple[str, str, str, str, str]]:
    """(question type, chance, CoAT, baseline, Δ) in percent."""
    coat, base, chance = accuracies(q, "coat"), accuracies(q, "base"), chance_levels(q)
    rows = []
    for task in [*sorted(t for t in coat[0] if t != ALL), ALL]:
        delta = [c[task] - b[task] for c, b in zip(coat, base, strict=True)]
        rows.append(
            (
                task,
                f"{100 * chance[task]:.1f}",
                mean_sd([c[task] for c in coat], 100),
                mean_sd([b[task] for b in base], 100),
                ("+" if statistics.mean(delta) >= 0 else "") + mean_sd(delta, 100),
            )
        )
    return rows


def answer_fit(q: Quickstart, variant: str) -> tuple[list[float], list[float]]:
    """Per seed: the share of held-out answers that are one of their question type's possible answers
    (synth.ANSWERS), and the accuracy among those. A model can fail by not having learnt which answers
    go with which question (a language failure) or by choosing the wrong one of them (a hearing failure)."""
    from stages.corpus.synth import ANSWERS
    from stages.evaluate.scoring import normalise_label

    tasks, fit, accuracy_in_set = task_of_clip(q), [], []
    for seed in range(q.cfg.seeds):
        path = q.runs / f"{variant}-seed{seed}" / "eval" / "predictions.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        in_set = [
            r
            for r in rows
            if normalise_label(r["prediction"] or "") in {normalise_label(a) for a in ANSWERS[tasks[r["id"]]]}
        ]
        fit.append(len(in_set) / len(rows))
        accuracy_in_set.append(sum(r["correct"] for r in in_set) / len(in_set) if in_set else 0.0)
    return fit, accuracy_in_set


def answer_fit_rows(q: Quickstart) -> list[tuple[str, str, str]]:
    """(measure, CoAT, baseline) in percent."""
    (coat_fit, coat_acc), (base_fit, base_acc) = answer_fit(q, "coat"), answer_fit(q, "base")
    return [
        ("answers that fit the question", mean_sd(coat_fit, 100), mean_sd(base_fit, 100)),
        ("accuracy among those", mean_sd(coat_acc, 100), mean_sd(base_acc, 100)),
    ]


def probe_rows(q: Quickstart) -> list[tuple[str, str, str]]:
    """(expert/target@position, CoAT, baseline): each run's best layer, mean ± sd over seeds."""
    best: dict[tuple[str, str], list[float]] = defaultdict(list)
    keys: list[str] = []
    for seed in range(q.cfg.seeds):
        scores = json.loads((q.out / "probes" / f"seed{seed}" / "probes.json").read_text())
        for run, table in scores.items():
            variant = Path(run).name.split("-seed")[0]
            for key, values in table.items():
                keys += [key] if key not in keys else []
                best[(variant, key)].append(float(np.nanmax(np.array(values, dtype=float))))
    return [(key, mean_sd(best[("coat", key)], digits=3), mean_sd(best[("base", key)], digits=3)) for key in keys]


def loss_curves(q: Quickstart) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [json.loads(line) for line in (q.runs / name / "metrics.jsonl").read_text().splitlines()]
        for name in q.cfg.run_names()
    }


def smooth(values: list[float], width: int) -> np.ndarray:
    """A trailing moving average; the first values average what there is so far."""
    x = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(x, 0, 0.0))
    counts = np.minimum(np.arange(1, len(x) + 1), width)
    return (sums[1:] - sums[np.maximum(np.arange(1, len(x) + 1) - width, 0)]) / counts


def loss_png(q: Quickstart, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = loss_curves(q)
    experts = q.cfg.experts
    fig, axes = plt.subplots(1, 1 + len(experts), figsize=(4.2 * (1 + len(experts)), 3.4), squeeze=False)
    width = max(1, q.cfg.steps // 20)
    for seed in range(q.cfg.seeds):
        color = f"C{seed}"
        for variant, style in (("coat", "-"), ("base", "--")):
            rows = curves[f"{variant}-seed{seed}"]
            steps = [r["step"] for r in rows]
            label = f"{'CoAT' if variant == 'coat' else 'baseline'} seed {seed}"
            axes[0, 0].plot(steps, smooth([r["lm"] for r in rows], width), style, color=color, label=label)
            if variant == "coat":
                for ax, expert in zip(axes[0, 1:], experts, strict=True):
                    ax.plot(steps, smooth([r[expert] for r in rows], width), style, color=color, label=label)
    axes[0, 0].set_title("answer (LM) loss")
    for ax, expert in zip(axes[0, 1:], experts, strict=True):
        ax.set_title(f"{expert} loss of the heads (CoAT)")
    for ax in axes[0]:
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7)
    fig.suptitle(f"training losses (moving average over {width} steps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_png(q: Quickstart, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coat, base, chance = accuracies(q, "coat"), accuracies(q, "base"), chance_levels(q)
    tasks = [*sorted(t for t in coat[0] if t != ALL), ALL]
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    for offset, (label, runs) in zip((-0.2, 0.2), (("CoAT", coat), ("baseline (--no-think)", base)), strict=True):
        values = np.array([[r[t] for t in tasks] for r in runs]) * 100
        spread = values.std(0, ddof=1) if len(runs) > 1 else None
        ax.bar(x + offset, values.mean(0), 0.4, yerr=spread, capsize=3, label=label)
    ax.scatter(x, [100 * chance[t] for t in tasks], marker="_", s=400, color="black", zorder=3, label="chance")
    ax.set_xticks(x, tasks, rotation=20, ha="right")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"mean ± sd over {q.cfg.seeds} seed(s)" if q.cfg.seeds > 1 else "one seed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def readout_example(q: Quickstart) -> None:
    """`generate --readout` on the first held-out clip of READOUT_TASK, with both seed-0 runs' answers."""
    from stages.evaluate.answer import answer, load_run
    from stages.evaluate.benchmarks import load_synth
    from stages.evaluate.readout import readout_clip
    from stages.evaluate.run_eval import item_wave

    out = q.out / "report"
    if (out / "readout.json").is_file():
        console.print(f"  {out / 'readout.png'}: already drawn")
        return
    out.mkdir(parents=True, exist_ok=True)
    items = load_synth(q.heldout)
    item = next((i for i in items if i.groups.get("task") == READOUT_TASK), items[0])
    wave = item_wave(item)
    said = {}
    for variant in ("coat", "base"):
        model = load_run(q.runs / f"{variant}-seed0")
        said[variant] = answer(model, [wave], [item.question], 8)[0].text
        if variant == "coat":
            lines = readout_clip(model, wave, item.question, out / "readout.png").lines
    record = {"clip": item.id, "question": item.question, "reference": item.reference, "answers": said, "lines": lines}
    (out / "readout.json").write_text(json.dumps(record, indent=1))


def _markdown_table(header: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


ACCURACY_HEADER = ["question type", "chance %", "CoAT %", "baseline %", "Δ (points)"]
FIT_HEADER = ["held-out answers (%)", "CoAT", "baseline"]
PROBE_HEADER = ["expert / target @ position", "CoAT", "baseline"]


def write_report(q: Quickstart, timings: dict[str, float], wall_s: float) -> Path:
    """DIR/report.md and its pictures under DIR/report/, from the files the phases wrote."""
    import platform

    import torch

    figures = q.out / "report"
    figures.mkdir(parents=True, exist_ok=True)
    loss_png(q, figures / "losses.png")
    accuracy_png(q, figures / "accuracy.png")
    readout = json.loads((figures / "readout.json").read_text())
    cfg, seeds = q.cfg, q.cfg.seeds
    per_run = {name: json.loads((q.runs / name / "eval" / "metrics.json").read_text()) for name in cfg.run_names()}
    sections = [
        "# coat-pipe quickstart report",
        f"Generated by `coat-pipe quickstart --out {q.out}` with the settings at the end, from the files under "
        f"`{q.out}`: do not edit it, run the command again.",
        f"Machine: {platform.node()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}. Wall time {sum(timings.values()):.0f} s over the invocations that built "
        f"this folder (the last one: {wall_s:.0f} s).",
        "## Held-out accuracy by question type",
        f"{cfg.heldout_clips} held-out clips (synth seed 1), never seen in training. "
        f"Mean ± sd over {seeds} seed(s); Δ is CoAT minus the baseline of the same seed. "
        "Chance is always giving the question type's most common answer.",
        _markdown_table(ACCURACY_HEADER, accuracy_rows(q)),
        "![held-out accuracy](report/accuracy.png)",
        "Per run: "
        + ", ".join(f"`{name}` {100 * m['accuracy']:.1f} %" for name, m in per_run.items())
        + " (each run's `eval/metrics.json`).",
        "Does the answer fit the question (one of its type's possible answers), and how often is a fitting "
        "answer right? The first is learning the task's language, the second hearing the clip.",
        _markdown_table(FIT_HEADER, answer_fit_rows(q)),
        "## Training",
        f"Both variants: the tiny Qwen2-Audio twin (`{q.model_dir}`, {cfg.window_s} s audio window), LoRA rank "
        f"{cfg.lora_rank} on every linear layer of the language model, {cfg.steps} steps of {cfg.ranks} DeepSpeed "
        f"ZeRO-2 CPU ranks × {cfg.batch_size} clips, lr {cfg.lr}, the same data order per seed. CoAT adds "
        f"K = {cfg.think_tokens} thinking positions and heads for {', '.join(cfg.experts)} "
        f"(λ = {cfg.distill_weight}, schedule {cfg.schedule}); the baseline is `--no-think`.",
        "![training losses](report/losses.png)",
        "## What the hidden states hold (probes)",
        "Linear probes, 5-fold cross-validated by clip on the held-out clips, at every layer; the table gives "
        "each run's best layer, mean ± sd over seeds: R² of ridge probes on the standardised targets (for pitch, "
        "the average of the cents, on voiced frames, and the voicing). `@think`: the K thinking positions (the "
        "baseline is read with the untrained block appended); `@answer`: the last prompt position, where the "
        "answer starts. `slots`: the target pooled to K time slots; `clip`: its mean over the clip.",
        _markdown_table(PROBE_HEADER, probe_rows(q)),
        "![probe score by layer, seed 0](probes/seed0/probe_layers.png)",
        "## Reading out the thinking block",
        f"`coat-pipe generate --run {q.runs / 'coat-seed0'} --readout` on held-out clip `{readout['clip']}`: "
        f"“{readout['question']}” (answer: **{readout['reference']}**). CoAT said `{readout['answers']['coat']!r}`, "
        f"the baseline `{readout['answers']['base']!r}`.",
        "\n".join(f"- {line}" for line in readout["lines"]),
        "![readout](report/readout.png)",
        "## Wall time by phase (seconds, summed over invocations)",
        _markdown_table(["phase", "seconds"], [(title, f"{s:.0f}") for title, s in timings.items()]),
        "## Settings (`quickstart.yaml`)",
        "```yaml\n" + (q.out / "quickstart.yaml").read_text().rstrip() + "\n```",
    ]
    report = q.out / "report.md"
    report.write_text("\n\n".join(sections) + "\n")
    return report


def print_summary(q: Quickstart) -> None:
    """The side-by-side tables on stdout."""
    print_table(f"held-out accuracy, mean ± sd over {q.cfg.seeds} seed(s)", ACCURACY_HEADER, accuracy_rows(q))
    print_table("do the answers fit the question?", FIT_HEADER, answer_fit_rows(q))
    print_table("probes: best layer, mean ± sd over seeds", PROBE_HEADER, probe_rows(q))
