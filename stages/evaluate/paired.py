"""Paired statistics for `eval compare`: runs scored on the same items differ by how much, and how surely.

Every run's `predictions.jsonl` holds one verdict per item. Two arms (one run each, or several runs each,
paired by position: the k-th run of each arm is the same seed) are compared item by item:
- Δ = mean accuracy of arm B − arm A, over the items (and the seeds);
- a 95 % paired bootstrap interval: items resampled with replacement (and, with several runs per arm,
  seeds resampled too, the same seeds for both arms), the 2.5th and 97.5th percentiles of Δ;
- McNemar's exact test: of the items the two runs disagree on, how lopsided the split is, as a two-sided
  binomial p at 1/2. With several runs per arm the discordant items of every seed are pooled (each seed's
  items paired with the same seed's): that takes the seed-item pairs as independent, which the same
  items under several seeds are not quite, so read it beside the interval, which resamples both.
The minimum detectable effect of such a design is (z_0.975 + z_0.8) standard errors, the standard error
read off the bootstrap interval (its half-width / z_0.975).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.evaluate.seed_stats import VarianceComponents, seed_differences, sign_flip_p
from store_schema.errors import UserError

ALL = "overall"


@dataclass(frozen=True)
class RunVerdicts:
    """One run's per-item verdicts, the group values each item belongs to (e.g. task: sound), each item's
    reference answer, and what the run was scored on (eval.json: benchmark, manifest digest)."""

    folder: Path
    correct: dict[str, bool]
    groups: dict[str, dict[str, str]]
    references: dict[str, str] = field(default_factory=dict)
    scored_on: dict[str, str] = field(default_factory=dict)

    @property
    def items(self) -> list[str]:
        return sorted(self.references or self.correct)


VERDICTS = {"generate": "correct", "likelihood": "likelihood_correct"}  # the scoring -> its predictions.jsonl field


def read_verdicts(folder: Path, scoring: str | None = "generate") -> RunVerdicts:
    """A `coat-pipe eval` output folder's predictions.jsonl: {id: correct}, {id: {key: value}}; with
    scoring "likelihood", the verdicts of `--scoring both`'s likelihood choices; with None, the items and
    references only (WER has no verdict per item). Raises UserError naming the file and line for a row
    without an id or a true/false verdict, an id given twice, or no rows at all."""
    field_name = VERDICTS[scoring] if scoring else "id"
    path = folder / "predictions.jsonl"
    if not path.is_file():
        raise UserError(f"{folder}: no predictions.jsonl (the output folder of `coat-pipe eval`)")
    correct, groups, references, lines = {}, {}, {}, {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            item, verdict = str(row["id"]), row[field_name]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}:{number}: not a scored prediction row (id and {field_name})") from None
        if scoring and not isinstance(
            verdict, bool
        ):  # the string "false" is not a verdict, and bool() would call it true
            raise UserError(f"{path}:{number}: {field_name} is {verdict!r}, not true or false")
        if item in lines:
            raise UserError(f"{path}:{number}: id {item!r} again (first on line {lines[item]}); which counts?")
        lines[item] = number
        if scoring:
            correct[item] = verdict
        groups[item] = {str(k): str(v) for k, v in (row.get("groups") or {}).items()}
        references[item] = json.dumps(row.get("reference"))
    if not lines:
        raise UserError(f"{path}: no scored items")
    return RunVerdicts(folder, correct, groups, references, scored_on(folder))


def scored_on(folder: Path) -> dict[str, str]:
    """What eval.json says the run was scored on: benchmark and the manifest's digest (older runs: none)."""
    path = folder / "eval.json"
    try:
        meta = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        raise UserError(f"{path}: not valid JSON") from None
    return {k: str(meta[k]) for k in ("benchmark", "manifest_sha256") if isinstance(meta, dict) and k in meta}


def refuse_incomparable(runs: list[RunVerdicts]) -> None:
    """Runs pair item by item only when they were scored on the same question set: the same benchmark and
    manifest (eval.json), the same ids and, for each id, the same reference answer."""
    first = runs[0]
    for run in runs[1:]:
        for key in ("benchmark", "manifest_sha256"):
            mine, theirs = first.scored_on.get(key), run.scored_on.get(key)
            if mine is not None and theirs is not None and mine != theirs:
                what = "benchmarks" if key == "benchmark" else "manifests"
                raise UserError(
                    f"{run.folder} and {first.folder} were scored on different {what}; compare like with like"
                )
        if run.items != first.items:
            raise UserError(f"{run.folder} was scored on other items than {first.folder}; compare like with like")
        differ = [i for i in first.references if run.references.get(i) != first.references.get(i)]
        if differ:
            raise UserError(
                f"{run.folder} and {first.folder} give {len(differ)} item(s) other reference answers (e.g. id "
                f"{differ[0]!r}): not the same questions; compare like with like"
            )


@dataclass(frozen=True)
class PairedDelta:
    """B − A on one row of the table (all items, or the items of one group value)."""

    row: str
    items: int
    accuracy_a: float
    accuracy_b: float
    delta: float
    low: float  # 95 % paired bootstrap interval of delta
    high: float
    p_mcnemar: float  # exact McNemar; several runs per arm: the discordant items of all seeds pooled
    discordant: tuple[int, int]  # (A right B wrong, A wrong B right), summed over seeds
    # Seeds as the unit: the exact sign-flip test over the per-seed differences (stages/evaluate/seed_stats.py);
    # None with one run per arm. McNemar pooled over seeds is conditional on these trained models.
    p_seeds: float | None = None
    components: VarianceComponents | None = None  # of the paired difference: between seeds, within items


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p: the discordant items split as a fair coin would split them."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of mean(b) − mean(a) for (seeds, items) arrays of 0/1 paired on both axes:
    items resampled with replacement, and seeds too when there are several."""
    rng = np.random.default_rng(seed)
    seeds, items = a.shape
    diff = b.astype(np.float64) - a.astype(np.float64)  # (seeds, items)
    deltas = np.empty(resamples)
    for start in range(0, resamples, 1000):
        count = min(1000, resamples - start)
        pick_items = rng.integers(0, items, size=(count, items))
        pick_seeds = rng.integers(0, seeds, size=(count, seeds)) if seeds > 1 else np.zeros((count, 1), dtype=int)
        # mean over the drawn seeds of the mean over the drawn items
        per_seed = np.stack([diff[pick_seeds[:, s]][np.arange(count)[:, None], pick_items] for s in range(seeds)])
        deltas[start : start + count] = per_seed.mean(axis=(0, 2))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def compare_arms(arm_a: list[RunVerdicts], arm_b: list[RunVerdicts], resamples: int = 10_000) -> list[PairedDelta]:
    """Δ (B − A) with its interval for all items, then for every group value the runs record."""
    if len(arm_a) != len(arm_b):
        raise UserError(f"the arms hold {len(arm_a)} and {len(arm_b)} runs; runs pair by seed, give as many of each")
    refuse_incomparable([*arm_a, *arm_b])
    items = sorted(arm_a[0].correct)
    rows: list[tuple[str, list[str]]] = [(ALL, items)]
    keys = sorted({k for g in arm_a[0].groups.values() for k in g})
    for key in keys:
        values = sorted({arm_a[0].groups[i].get(key, "") for i in items})
        rows += [(f"{key}: {v}", [i for i in items if arm_a[0].groups[i].get(key, "") == v]) for v in values]
    out = []
    for name, members in rows:
        a = np.array([[run.correct[i] for i in members] for run in arm_a], dtype=np.int8)
        b = np.array([[run.correct[i] for i in members] for run in arm_b], dtype=np.int8)
        low, high = paired_bootstrap(a, b, resamples)
        a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        p, discordant = mcnemar_exact(a_only, b_only), (a_only, b_only)
        p_seeds = sign_flip_p(seed_differences(a, b)) if len(arm_a) > 1 else None
        components = VarianceComponents.observed(a, b)
        out.append(
            PairedDelta(
                name,
                len(members),
                float(a.mean()),
                float(b.mean()),
                float(b.mean() - a.mean()),
                low,
                high,
                p,
                discordant,
                p_seeds,
                components,
            )
        )
    return out


def paired_markdown(title: str, header: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return f"{title}\n\n" + "\n".join(lines) + "\n"
