"""Predictions → metrics.json (headline, n, unanswered, breakdowns) and a markdown table.

Every item counts: an unanswered one (its audio missing, its row incomplete) is wrong for accuracy
and an empty hypothesis for WER.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from stages.evaluate.benchmarks import BENCHMARKS, EvalItem
from stages.evaluate.prompts import answer_inside_tags
from stages.evaluate.scoring import corpus_wer, match_label, normalise_label, parse_choice, string_match

OTHER = "(other)"  # a classification prediction that names no label


def judge(benchmark: str, item: EvalItem, prediction: str | None) -> dict[str, Any]:
    """One item's verdict: `correct` under the benchmark's rule (and `parsed_correct`, `predicted`)."""
    kind = BENCHMARKS[benchmark].kind
    if kind == "choice":
        if prediction is None:
            return {"correct": False, "parsed": None, "parsed_correct": False}
        prediction = answer_inside_tags(prediction)  # a prompt that asks for <answer>…</answer>
        parsed = parse_choice(prediction, item.choices)
        answer = item.choices.index(item.reference) if item.reference in item.choices else None
        return {
            "correct": string_match(prediction, item.reference, item.choices),
            "parsed": None if parsed is None else item.choices[parsed],
            "parsed_correct": parsed is not None and parsed == answer,
        }
    if kind == "label":
        predicted = match_label(prediction, item.choices) if prediction is not None else None
        return {"correct": predicted == item.reference, "predicted": predicted or OTHER}
    if kind == "exact":
        ok = prediction is not None and normalise_label(prediction) == normalise_label(item.reference)
        return {"correct": ok}
    return {}  # wer: scored over the corpus


def score(benchmark: str, items: list[EvalItem], predictions: dict[str, str | None]) -> dict[str, Any]:
    """metrics.json's content. `predictions` maps item id to text (None or absent: unanswered)."""
    kind = BENCHMARKS[benchmark].kind
    answered = {i.id: predictions.get(i.id) for i in items}
    unanswered = sum(1 for i in items if answered[i.id] is None)
    metrics: dict[str, Any] = {"benchmark": benchmark, "n": len(items), "unanswered": unanswered}
    if kind == "wer":
        result = corpus_wer([i.reference for i in items], [answered[i.id] or "" for i in items])
        return metrics | result
    verdicts = {i.id: judge(benchmark, i, answered[i.id]) for i in items}
    metrics["accuracy"] = _mean(v["correct"] for v in verdicts.values())
    if kind == "choice":
        metrics["accuracy_parsed"] = _mean(v["parsed_correct"] for v in verdicts.values())
    breakdowns: dict[str, dict[str, dict[str, Any]]] = {}
    keys = sorted({k for i in items for k in i.groups})
    for key in keys:
        table: dict[str, dict[str, Any]] = {}
        by_value: dict[str, list[EvalItem]] = defaultdict(list)
        for item in items:
            by_value[item.groups.get(key, "")].append(item)
        for value, members in sorted(by_value.items()):
            row = {"n": len(members), "accuracy": _mean(verdicts[m.id]["correct"] for m in members)}
            if kind == "choice":
                row["accuracy_parsed"] = _mean(verdicts[m.id]["parsed_correct"] for m in members)
            row["unanswered"] = sum(1 for m in members if answered[m.id] is None)
            table[value] = row
        breakdowns[key] = table
    metrics["breakdowns"] = breakdowns
    if kind == "label":
        labels = items[0].choices if items else []
        pairs = Counter((i.reference, verdicts[i.id]["predicted"]) for i in items)
        metrics["labels"] = labels
        metrics["confusion"] = [[pairs[(t, p)] for p in [*labels, OTHER]] for t in labels]
        metrics["recall"] = {t: _mean(verdicts[i.id]["correct"] for i in items if i.reference == t) for t in labels}
    return metrics


def _mean(values: Any) -> float:
    values = list(values)
    return sum(map(float, values)) / len(values) if values else 0.0


def markdown(metrics: dict[str, Any], title: str = "") -> str:
    """The metrics as markdown: the headline, then one table per breakdown."""
    lines = [f"# {title or metrics['benchmark']}", ""]
    n, unanswered = metrics["n"], metrics["unanswered"]
    if "wer" in metrics:
        lines.append(
            f"WER **{100 * metrics['wer']:.2f} %** over {metrics['words']} reference words, {n} items "
            f"({unanswered} unanswered, scored as empty)."
        )
        return "\n".join(lines) + "\n"
    headline = f"Accuracy **{100 * metrics['accuracy']:.1f} %** over {n} items ({unanswered} unanswered, scored wrong)"
    if "accuracy_parsed" in metrics:
        headline += f"; letter-or-text parser: {100 * metrics['accuracy_parsed']:.1f} %"
    lines += [headline + ".", ""]
    parsed = "accuracy_parsed" in metrics
    for key, table in metrics.get("breakdowns", {}).items():
        header = f"| {key} | n | accuracy |" + (" parser |" if parsed else "") + " unanswered |"
        lines += [header, "|---|---:|---:|" + ("---:|" if parsed else "") + "---:|"]
        for value, row in table.items():
            cells = f"| {value or '—'} | {row['n']} | {100 * row['accuracy']:.1f} |"
            cells += f" {100 * row['accuracy_parsed']:.1f} |" if parsed else ""
            lines.append(cells + f" {row['unanswered']} |")
        lines.append("")
    if "recall" in metrics:
        lines += ["| label | recall |", "|---|---:|"]
        lines += [f"| {label} | {100 * r:.1f} |" for label, r in metrics["recall"].items()]
        lines.append("")
    return "\n".join(lines)
