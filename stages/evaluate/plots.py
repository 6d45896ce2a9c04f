"""The evaluation's pictures, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_png(metrics: dict[str, Any], path: Path) -> Path:
    """Rows: true label; columns: predicted label (and "(other)"); counts in the cells."""
    labels, matrix = metrics["labels"], np.asarray(metrics["confusion"])
    columns = [*labels, "(other)"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(columns), 1.0 + 0.6 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (r, c), n in np.ndenumerate(matrix):
        ax.text(c, r, str(n), ha="center", va="center", color="black" if n < matrix.max() / 2 else "white")
    ax.set_title(f"{metrics['benchmark']}: accuracy {100 * metrics['accuracy']:.1f} %")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def grouped_bars_png(rows: list[tuple[str, list[float]]], runs: list[str], path: Path, ylabel: str) -> Path:
    """One group of bars per row (a task), one bar per run."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) * max(1, len(runs)) * 0.5 + 2), 3.6))
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(rows))
    for j, run in enumerate(runs):
        ax.bar(x + (j - (len(runs) - 1) / 2) * width, [r[1][j] for r in rows], width, label=run)
    ax.set_xticks(x, [r[0] for r in rows], rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def probe_layers_png(curves: dict[str, list[float]], path: Path, title: str) -> Path:
    """Held-out probe score per layer, one line per (run, position, target)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", markersize=3, label=name)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("held-out R² / accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
