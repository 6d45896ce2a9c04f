"""`eval score` reads only prediction rows it can trust and never overwrites a finished evaluation."""

import json

import pytest

from tests.helpers import cli
from tests.refusals import error_line, tree_state


def _score(manifest, predictions, *extra, expect: int = 0):
    return cli(
        "eval",
        "score",
        "--benchmark",
        "mmau",
        "--manifest",
        manifest,
        "--predictions",
        predictions,
        *extra,
        expect=expect,
    )


@pytest.fixture
def scored(mmau_manifest, tmp_path):
    """A finished evaluation folder with predictions.jsonl and metrics.json, plus a partial file beside them."""
    rows = json.loads(mmau_manifest.read_text())
    folder = tmp_path / "eval"
    folder.mkdir()
    lines = [{"id": r["id"], "prediction": r["answer"]} for r in rows[:50]]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    _score(mmau_manifest, folder / "predictions.jsonl", "--out", folder / "done")
    (folder / "partial.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines[:10]))
    return folder, rows


def test_rescoring_a_partial_file_writes_beside_it_not_over_the_finished_evaluation(scored, mmau_manifest):
    folder, _ = scored
    before = tree_state(folder / "done", folder / "predictions.jsonl")
    _score(mmau_manifest, folder / "partial.jsonl")
    assert tree_state(folder / "done", folder / "predictions.jsonl") == before
    metrics = json.loads((folder / "partial-scored" / "metrics.json").read_text())
    assert metrics["unanswered"] == metrics["n"] - 10
    # a second time: the folder is no longer empty, so it is refused
    before = tree_state(folder)
    result = _score(mmau_manifest, folder / "partial.jsonl", expect=2)
    error_line(result, 2, folder / "partial-scored", "is not empty")
    assert tree_state(folder) == before


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (lambda ids: {"id": ids[0], "prediction": 3}, "the prediction is int, not text or null"),
        (lambda ids: {"id": ids[0], "prediction": ["a"]}, "the prediction is list, not text or null"),
        (lambda ids: [ids[0], "a"], "is not an object with an id"),
        (lambda ids: {"prediction": "a"}, "is not an object with an id"),
        (lambda ids: {"id": ids[0], "prediction": "b"}, "repeats id"),
    ],
    ids=["number", "list-prediction", "row-is-a-list", "no-id", "duplicate-id"],
)
def test_rows_that_cannot_be_scored_are_named_with_their_line(scored, mmau_manifest, tmp_path, line, said):
    folder, rows = scored
    ids = [r["id"] for r in rows]
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": ids[0], "prediction": "a"}) + "\n" + json.dumps(line(ids)) + "\n")
    before = tree_state(tmp_path)
    result = _score(mmau_manifest, path, expect=2)
    assert said in error_line(result, 2, f"{path}: line 2")
    assert tree_state(tmp_path) == before
