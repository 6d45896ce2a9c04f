"""The quickstart's report: tables and pictures computed from the runs' own files, never edited by hand.

Accuracy is per question type on the held-out split, under both scorings (the generated answer; the
most likely of the question type's answers), as mean ± sd over seeds (sd with n - 1; a single seed shows
the mean alone). Δ is CoAT minus another arm, paired item by item and seed by seed: its 95 % bootstrap
interval resamples items and seeds, and McNemar's exact p pools the seeds' discordant items
(stages/evaluate/paired.py).
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.quickstart_setup import LABELS, VARIANTS, QuickstartLayout
from stages.evaluate.paired import PairedDelta, compare_arms, read_verdicts
from stages.evaluate.seed_stats import holm, minimum_detectable_effect
from stages.progress import print_table

SCORINGS = ("likelihood", "generate")  # the pre-registered primary scoring first (docs/EXPERIMENTS.md)
AGAINST = ("base", "control")  # CoAT − each of these
ALL = "all questions"


def mean_sd(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """Mean ± sd over seeds as "61.2 ± 3.4", or "61.2" for a single value."""
    if len(values) == 1:
        return f"{scale * values[0]:.{digits}f}"
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * statistics.stdev(values):.{digits}f}"


@dataclass
class Results:
    """What the tables and the accuracy chart show, read once from the runs' files."""

    seeds: int
    accuracy: dict[str, dict[str, list[dict[str, float]]]]  # scoring -> arm -> per seed: question type -> accuracy
    chance: dict[str, float]  # question type (and ALL) -> the majority answer's share
    fit: dict[str, list[tuple[float, float]]]  # arm -> per seed: (answers that fit, accuracy among those)
    probes: dict[str, dict[str, list[float]]]  # arm -> expert/target@position -> per seed, best layer
    paired: dict[tuple[str, str], dict[str, PairedDelta]]  # (scoring, other arm) -> question type -> CoAT − other

    @property
    def tasks(self) -> list[str]:
        return [*sorted(t for t in self.accuracy["generate"]["coat"][0] if t != ALL), ALL]


def read_results(q: QuickstartLayout, resamples: int = 10_000) -> Results:
    """Each run's eval/metrics.json and predictions.jsonl, each seed's probes.json, the held-out answers."""
    from stages.lab.synth_benchmark import load_synth

    items = load_synth(q.heldout)
    task_of = {item.id: item.groups["task"] for item in items}
    answers: dict[str, Counter] = defaultdict(Counter)
    for item in items:
        answers[item.groups["task"]][item.reference] += 1
    chance = {task: max(c.values()) / sum(c.values()) for task, c in answers.items()}
    chance[ALL] = sum(max(c.values()) for c in answers.values()) / len(items)

    accuracy: dict[str, dict[str, list[dict[str, float]]]] = {s: {v: [] for v in VARIANTS} for s in SCORINGS}
    fit: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    probes: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in VARIANTS}
    for seed in range(q.cfg.seeds):
        for variant in VARIANTS:
            eval_dir = q.runs / f"{variant}-seed{seed}" / "eval"
            metrics = json.loads((eval_dir / "metrics.json").read_text())
            for scoring, m in (("generate", metrics), ("likelihood", metrics["likelihood"])):
                row = {task: float(t["accuracy"]) for task, t in m["breakdowns"]["task"].items()}
                accuracy[scoring][variant].append(row | {ALL: float(m["accuracy"])})
            predictions = [json.loads(line) for line in (eval_dir / "predictions.jsonl").read_text().splitlines()]
            fit[variant].append(answer_fit(predictions, task_of))
        for run, table in json.loads((q.out / "probes" / f"seed{seed}" / "probes.json").read_text()).items():
            for key, values in table.items():
                probes[Path(run).name.split("-seed")[0]][key].append(float(np.nanmax(np.array(values, dtype=float))))
    paired = {}
    for scoring in SCORINGS:
        arms = {
            v: [read_verdicts(q.runs / f"{v}-seed{s}" / "eval", scoring) for s in range(q.cfg.seeds)] for v in VARIANTS
        }
        for other in AGAINST:
            rows = compare_arms(arms[other], arms["coat"], resamples)
            paired[scoring, other] = {ALL if r.row == "overall" else r.row.removeprefix("task: "): r for r in rows}
    return Results(q.cfg.seeds, accuracy, chance, fit, probes, paired)


def answer_fit(predictions: list[dict[str, Any]], task_of: dict[str, str]) -> tuple[float, float]:
    """The share of answers that are one of their question type's possible answers (synth.ANSWERS), and
    the accuracy among those. A model can fail by not having learnt which answers go with which question
    (a language failure) or by choosing the wrong one of them (a hearing failure)."""
    from stages.evaluate.scoring import normalise_label
    from stages.lab.synth import ANSWERS

    possible = {task: {normalise_label(a) for a in answers} for task, answers in ANSWERS.items()}
    in_set = [p for p in predictions if normalise_label(p["prediction"] or "") in possible[task_of[p["id"]]]]
    accuracy = sum(p["correct"] for p in in_set) / len(in_set) if in_set else 0.0
    return len(in_set) / len(predictions), accuracy


def accuracy_rows(r: Results, scoring: str) -> list[tuple[str, ...]]:
    """(question type, chance, each arm) in percent, mean ± sd over seeds."""
    return [
        (
            task,
            f"{100 * r.chance[task]:.1f}",
            *(mean_sd([a[task] for a in r.accuracy[scoring][v]], 100) for v in VARIANTS),
        )
        for task in r.tasks
    ]


def delta_cell(d: PairedDelta) -> str:
    """ "+2.5 [-3.1, +8.0]": Δ and its 95 % paired interval, in points."""
    return f"{100 * d.delta:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"


def paired_rows(r: Results, scoring: str) -> list[tuple[str, ...]]:
    """(question type, then per other arm: CoAT − it with its interval, the seed-level sign-flip p with its
    Holm adjustment over the question types, and McNemar's p pooled over seeds)."""
    types = [t for t in r.tasks if t != ALL]
    adjusted = {other: dict(zip(types, holm([_p(r.paired[scoring, other][t]) for t in types]))) for other in AGAINST}
    rows = []
    for task in r.tasks:
        cells: list[str] = [task]
        for other in AGAINST:
            d = r.paired[scoring, other][task]
            seeds_p = "—" if d.p_seeds is None else f"{d.p_seeds:.3g}"  # one seed: nothing to test across
            if task != ALL and d.p_seeds is not None:
                seeds_p += f" ({adjusted[other][task]:.3g})"
            cells += [delta_cell(d), seeds_p, f"{d.p_mcnemar:.3g}"]
        rows.append(tuple(cells))
    return rows


def _p(d: PairedDelta) -> float:
    return 1.0 if d.p_seeds is None else d.p_seeds


PRIMARY = "control"  # the registered primary contrast: CoAT − control, the supervision alone (docs/EXPERIMENTS.md)


def detectable(r: Results, scoring: str) -> tuple[float, float]:
    """The smallest |Δ| (points) of the primary contrast this design finds with 80 % power at 5 %, from its
    variance components (between seeds, within items): over all questions, and the median over types."""
    rows = r.paired[scoring, PRIMARY]

    def mde(d: PairedDelta) -> float:
        return 100 * minimum_detectable_effect(d.components, r.seeds, d.items) if d.components else float("nan")

    return mde(rows[ALL]), float(np.median([mde(rows[t]) for t in r.tasks if t != ALL]))


def seed_floor_sentence(seeds: int) -> str:
    """What the seed-level test can and cannot show with this many seeds."""
    floor = 2 / 2**seeds
    if floor > 0.05:
        return (
            f"With {seeds} seed(s) the exact sign-flip test cannot give p below {floor:.3g}: this run cannot "
            "show a difference at the 5 % level whatever the data; it demonstrates the method, and at least 6 "
            "seeds are needed for a test (`coat-pipe quickstart --seeds 6`)."
        )
    return f"With {seeds} seeds the sign-flip test's smallest possible p is {floor:.3g}."


def answer_fit_rows(r: Results) -> list[tuple[str, ...]]:
    """(measure, each arm) in percent, of the generated answers."""
    return [
        (label, *(mean_sd([f[i] for f in r.fit[variant]], 100) for variant in VARIANTS))
        for i, label in enumerate(("answers that fit the question", "accuracy among those"))
    ]


def probe_rows(r: Results) -> list[tuple[str, ...]]:
    """(expert/target@position, each arm): each run's best layer, mean ± sd over seeds."""
    return [(key, *(mean_sd(r.probes[v][key], digits=3) for v in VARIANTS)) for key in r.probes["coat"]]


def loss_curves(q: QuickstartLayout) -> dict[str, list[dict[str, Any]]]:
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


def loss_png(q: QuickstartLayout, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = loss_curves(q)
    experts = q.cfg.training.experts
    fig, axes = plt.subplots(1, 1 + len(experts), figsize=(4.2 * (1 + len(experts)), 3.4), squeeze=False)
    width = max(1, q.cfg.training.steps // 20)
    for seed in range(q.cfg.seeds):
        color = f"C{seed}"
        for variant, style in zip(VARIANTS, ("-", "--", ":"), strict=True):
            rows = curves[f"{variant}-seed{seed}"]
            steps = [r["step"] for r in rows]
            label = f"{LABELS[variant]} seed {seed}"
            axes[0, 0].plot(steps, smooth([r["lm"] for r in rows], width), style, color=color, label=label)
            if variant != "base":  # the control's heads are measured, never trained (λ = 0)
                for ax, expert in zip(axes[0, 1:], experts, strict=True):
                    ax.plot(steps, smooth([r[expert] for r in rows], width), style, color=color, label=label)
    axes[0, 0].set_title("answer (LM) loss")
    for ax, expert in zip(axes[0, 1:], experts, strict=True):
        ax.set_title(f"{expert} loss of the heads (control: untrained)")
    for ax in axes[0]:
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7)
    fig.suptitle(f"training losses (moving average over {width} steps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_png(r: Results, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chance, tasks = r.chance, r.tasks
    x = np.arange(len(tasks))
    fig, axes = plt.subplots(1, len(SCORINGS), figsize=(14, 3.8), sharey=True)
    names = {"coat": "CoAT", "base": "baseline (--no-think)", "control": "control (--block-control)"}
    for ax, scoring in zip(axes, SCORINGS, strict=True):
        for offset, variant in zip((-0.27, 0.0, 0.27), VARIANTS, strict=True):
            values = np.array([[a[t] for t in tasks] for a in r.accuracy[scoring][variant]]) * 100
            spread = values.std(0, ddof=1) if r.seeds > 1 else None
            ax.bar(x + offset, values.mean(0), 0.27, yerr=spread, capsize=2, label=names[variant])
        ax.scatter(x, [100 * chance[t] for t in tasks], marker="_", s=300, color="black", zorder=3, label="chance")
        ax.set_xticks(x, tasks, rotation=20, ha="right")
        ax.set_ylim(0, 100)
        spread_text = f"mean ± sd over {r.seeds} seeds" if r.seeds > 1 else "one seed"
        ax.set_title(f"{scoring} scoring, {spread_text}", fontsize=10)
    axes[0].set_ylabel("held-out accuracy (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def numerics(threads: int) -> str:
    """What decides the float results besides the code and seeds: CPU, kernel level, libraries, threads."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mkl = torch.backends.mkl.is_available()
    return (
        f"{cpu}, torch kernels {torch.backends.cpu.get_cpu_capability()}, "
        f"{'MKL' if mkl else 'no MKL'}, oneDNN {torch.backends.mkldnn.is_available()}, {threads} thread(s) per rank"
    )


def twin_line(q: QuickstartLayout) -> str:
    """What the runs started from: the pretrained twin's recipe and held-out figure, or the random twin."""
    record_path = q.model_dir / "twin.json"
    if not record_path.is_file():
        return "The twin is randomly initialised (`twin: null`): its language model has learnt nothing before LoRA."
    record = json.loads(record_path.read_text())
    recipe, held = record["recipe"], record["heldout"]
    return (
        f"The twin was pretrained first (`coat-pipe twin`, {record['build_seconds']:.0f} s): every weight of the "
        f"random twin, {recipe['steps']} steps × {recipe['batch_size']} clips at lr {recipe['lr']}, on "
        f"“{record['task']}” over {recipe['train_clips']} clips of synth seed {recipe['corpus_seed']}. On "
        f"{held['clips']} held-out clips of that task its greedy description is exactly right for "
        f"{100 * held['exact']:.1f} %, the kinds of sound for {100 * held['kinds']:.1f} %, the length for "
        f"{100 * held['length']:.1f} % (loss {record['loss_start']:.2f} over the first tenth of its steps, "
        f"{record['loss_end']:.2f} over the last)."
    )


def markdown_table(header: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def closing_sections(q: QuickstartLayout, timings: dict[str, float]) -> list[str]:
    """The report's last sections: wall time by phase, and the settings DIR was made with."""
    return [
        "## Wall time by phase (seconds, summed over invocations)",
        markdown_table(["phase", "seconds"], [(title, f"{s:.0f}") for title, s in timings.items()]),
        "## Settings (`quickstart.yaml`)",
        "```yaml\n" + (q.out / "quickstart.yaml").read_text().rstrip() + "\n```",
    ]


ACCURACY_HEADER = ["question type", "chance %", *(f"{LABELS[v]} %" for v in VARIANTS)]
PAIRED_HEADER = [
    "question type",
    "CoAT − baseline",
    "p seeds (Holm)",
    "McNemar p",
    "CoAT − control",
    "p seeds (Holm)",
    "McNemar p",
]
FIT_HEADER = ["generated answers (%)", *(LABELS[v] for v in VARIANTS)]
PROBE_HEADER = ["expert / target @ position", *(LABELS[v] for v in VARIANTS)]


def write_report(q: QuickstartLayout, r: Results, timings: dict[str, float], wall_s: float) -> Path:
    """DIR/report.md and its pictures under DIR/report/, from the files the phases wrote."""
    import platform

    import torch

    figures = q.out / "report"
    figures.mkdir(parents=True, exist_ok=True)
    loss_png(q, figures / "losses.png")
    accuracy_png(r, figures / "accuracy.png")
    readout = json.loads((figures / "readout.json").read_text())
    cfg, seeds, train = q.cfg, q.cfg.seeds, q.cfg.training
    sections = [
        "# coat-pipe quickstart report",
        f"Generated by `coat-pipe quickstart --out {q.out}` with the settings at the end, from the files under "
        f"`{q.out}`: do not edit it, run the command again.",
        f"Machine: {platform.node()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}. Numerics: {numerics(cfg.threads_per_rank)}. Runs repeat digit for digit "
        "where this line and the installed versions are the same; elsewhere expect differences within the "
        'spread over seeds (docs/PERFORMANCE.md, "Determinism").',
        f"Wall time {sum(timings.values()):.0f} s over the invocations that built this folder "
        f"(the last one: {wall_s:.0f} s).",
        "## Held-out accuracy by question type",
        f"{cfg.heldout_clips} held-out clips (synth seed 1), never seen in training. Mean ± sd over {seeds} "
        "seed(s). Chance is always giving the question type's most common answer. *Likelihood*: the most likely "
        "of the question type's possible answers after the prompt (thinking block included), the pre-registered "
        "primary scoring (docs/EXPERIMENTS.md); *generate*: the greedy answer, exact match.",
        *(
            part
            for scoring in SCORINGS
            for part in (
                f"### {scoring} scoring",
                markdown_table(ACCURACY_HEADER, accuracy_rows(r, scoring)),
                "CoAT minus each arm, in points, paired by item and seed: Δ [95 % bootstrap interval over items "
                "and seeds]; *p seeds*: the exact sign-flip test over the per-seed differences, seeds as the "
                "unit of replication (in brackets: Holm-adjusted over the six question types); *McNemar p*: the "
                "discordant items of all seeds pooled, conditional on these trained models (descriptive).",
                markdown_table(PAIRED_HEADER, paired_rows(r, scoring)),
                "For the primary contrast (CoAT − control), a two-sided 5 % test of the seeds' mean difference "
                "(normal approximation, with this design's variance between seeds and within items) has 80 % "
                "power for |Δ| ≥ {:.1f} points over all questions and about {:.1f} points within one question "
                "type. ".format(*detectable(r, scoring))
                + seed_floor_sentence(r.seeds),
            )
        ),
        "![held-out accuracy](report/accuracy.png)",
        "Per run (generate / likelihood): "
        + ", ".join(
            f"`{variant}-seed{seed}` {100 * r.accuracy['generate'][variant][seed][ALL]:.1f} / "
            f"{100 * r.accuracy['likelihood'][variant][seed][ALL]:.1f} %"
            for seed in range(seeds)
            for variant in VARIANTS
        )
        + " (each run's `eval/metrics.json`).",
        "Does the generated answer fit the question (one of its type's possible answers), and how often is a "
        "fitting answer right? The first is learning the task's language, the second hearing the clip.",
        markdown_table(FIT_HEADER, answer_fit_rows(r)),
        "## Training",
        f"Every arm: the tiny Qwen2-Audio twin (`{q.model_dir}`, {cfg.window_s} s audio window), LoRA rank "
        f"{train.model.lora_rank} on every linear layer of the language model, {train.steps} steps of {cfg.ranks} "
        f"DeepSpeed ZeRO-2 CPU ranks × {train.batch_size} clips, lr {train.lr}, the same data order and LoRA "
        f"initialisation per seed. CoAT adds K = {train.model.think_tokens} thinking positions and heads for "
        f"{', '.join(train.experts)} (λ = {train.model.distill_weight}, schedule {train.schedule}); the baseline "
        "is `--no-think` (no block, no heads); the control is `--block-control`: CoAT's block and heads with "
        "λ = 0, so it differs from CoAT by the supervision alone.",
        twin_line(q),
        "![training losses](report/losses.png)",
        "## What the hidden states hold (probes)",
        f"Linear probes, 5-fold cross-validated by clip on the first {min(cfg.probe_clips, cfg.heldout_clips)} "
        "held-out clips, at every layer; the table gives "
        "each run's best layer, mean ± sd over seeds: R² of ridge probes on the standardised targets (for pitch, "
        "the average of the cents, on voiced frames, and the voicing). `@think`: the K thinking positions (the "
        "baseline is read with the untrained block appended); `@answer`: the last prompt position, where the "
        "answer starts. `slots`: the target pooled to K time slots; `clip`: its mean over the clip.",
        markdown_table(PROBE_HEADER, probe_rows(r)),
        "![probe score by layer, seed 0](probes/seed0/probe_layers.png)",
        "## Reading out the thinking block",
        f"`coat-pipe generate --run {q.runs / 'coat-seed0'} --readout` on held-out clip `{readout['clip']}`: "
        f"“{readout['question']}” (answer: **{readout['reference']}**). "
        + ", ".join(f"{LABELS[v]} said `{readout['answers'][v]!r}`" for v in VARIANTS)
        + ".",
        "\n".join(f"- {line}" for line in readout["lines"]),
        "![readout](report/readout.png)",
        *closing_sections(q, timings),
    ]
    report = q.out / "report.md"
    report.write_text("\n\n".join(sections) + "\n")
    return report


def print_summary(r: Results) -> None:
    """The side-by-side tables on stdout."""
    for scoring in SCORINGS:
        print_table(
            f"held-out accuracy, {scoring} scoring, mean ± sd over {r.seeds} seed(s)",
            ACCURACY_HEADER,
            accuracy_rows(r, scoring),
        )
        print_table(
            f"CoAT − each arm, {scoring} scoring: Δ [95 % interval], p seeds (Holm), McNemar p",
            PAIRED_HEADER,
            paired_rows(r, scoring),
        )
    print_table("do the generated answers fit the question?", FIT_HEADER, answer_fit_rows(r))
    print_table("probes: best layer, mean ± sd over seeds", PROBE_HEADER, probe_rows(r))
