"""`coat-pipe eval compare`: eval outputs side by side, one row per task, differences against the first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from store_schema.errors import UserError


def read_metrics(out: Path) -> dict[str, Any]:
    path = out / "metrics.json"
    if not path.is_file():
        raise UserError(f"{out}: no metrics.json (the output folder of `coat-pipe eval`)")
    return json.loads(path.read_text())


def compare_rows(metrics: list[dict[str, Any]]) -> tuple[str, list[tuple[str, list[float]]]]:
    """(measure, rows): the headline, then every breakdown value, as one value per run."""
    benchmarks = {m["benchmark"] for m in metrics}
    if len(benchmarks) != 1:
        raise UserError(f"these outputs are from different benchmarks ({', '.join(sorted(benchmarks))})")
    measure = "wer" if "wer" in metrics[0] else "accuracy"
    rows = [("overall", [float(m[measure]) for m in metrics])]
    first = metrics[0].get("breakdowns", {})
    for key, table in first.items():
        for value in table:
            cells = [m.get("breakdowns", {}).get(key, {}).get(value, {}).get(measure) for m in metrics]
            if all(c is not None for c in cells):
                rows.append((f"{key}: {value}", [float(c) for c in cells]))
    return measure, rows


def compare_markdown(names: list[str], measure: str, rows: list[tuple[str, list[float]]]) -> str:
    header = "| task | " + " | ".join(names) + " | " + " | ".join(f"Δ {n}" for n in names[1:]) + " |"
    lines = [header, "|---|" + "---:|" * (2 * len(names) - 1)]
    for task, values in rows:
        cells = [f"{100 * v:.1f}" for v in values] + [f"{100 * (v - values[0]):+.1f}" for v in values[1:]]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return f"{measure} (%)\n\n" + "\n".join(lines) + "\n"
