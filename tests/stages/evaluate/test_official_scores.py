"""`coat-pipe eval score` against the numbers the benchmarks' own evaluation scripts printed for the same
predictions (fixtures/official_scores.json; how they were made is written in it)."""

import json
from pathlib import Path

from tests.helpers import cli
from tests.stages.evaluate.scoring_cases import mmar_rows, prediction_for

OFFICIAL = json.loads(Path(__file__).with_name("fixtures").joinpath("official_scores.json").read_text())


def _compare(metrics: dict, official: dict) -> None:
    # our scorer found both right and wrong answers among these predictions, so agreeing is not vacuous
    assert 0 < metrics["accuracy"] < 1
    assert metrics["n"] == official["total"]["n"]
    assert round(100 * metrics["accuracy"], 2) == official["total"]["accuracy_pct"]
    for group, values in official.items():
        if group == "total":
            continue
        ours = metrics["breakdowns"][group]
        assert set(ours) == set(values), group
        for value, row in values.items():
            assert ours[value]["n"] == row["n"], (group, value)
            assert round(100 * ours[value]["accuracy"], 2) == row["accuracy_pct"], (group, value)


def _score(benchmark: str, manifest: Path, rows: list[dict], ids: list[str], tmp_path: Path) -> dict:
    predictions = tmp_path / "predictions.jsonl"
    lines = [json.dumps({"id": i, "prediction": prediction_for(r, n)}) for n, (i, r) in enumerate(zip(ids, rows))]
    predictions.write_text("\n".join(lines) + "\n")
    cli("eval", "score", "--benchmark", benchmark, "--manifest", manifest, "--predictions", predictions)
    return json.loads((tmp_path / "predictions-scored" / "metrics.json").read_text())


def test_mmau_scores_equal_the_official_script(mmau_manifest, tmp_path):
    rows = json.loads(mmau_manifest.read_text())
    metrics = _score("mmau", mmau_manifest, rows, [r["id"] for r in rows], tmp_path)
    _compare(metrics, OFFICIAL["mmau"])


def test_mmar_scores_equal_the_official_script(tmp_path):
    rows = mmar_rows()
    manifest = tmp_path / "mmar.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = _score("mmar", manifest, rows, [r["id"] for r in rows], tmp_path)
    _compare(metrics, OFFICIAL["mmar"])
