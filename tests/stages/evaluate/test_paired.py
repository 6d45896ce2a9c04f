"""`eval compare`'s paired statistics against independent computations: scipy's exact binomial test for
McNemar, a plain bootstrap loop for the intervals, and counts made by hand."""

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from stages.evaluate.benchmarks import EvalItem
from stages.evaluate.paired import RunVerdicts, compare_arms, mcnemar_exact, paired_bootstrap
from stages.evaluate.run_eval import write_outputs
from tests.helpers import cli


@pytest.mark.parametrize(("a_only", "b_only"), [(0, 0), (0, 5), (3, 9), (10, 10), (1, 20), (40, 61)])
def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_items(a_only, b_only):
    n = a_only + b_only
    expected = 1.0 if n == 0 else binomtest(a_only, n, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(a_only, b_only) == pytest.approx(expected, rel=1e-9)


def _plain_bootstrap(a, b, resamples, rng):
    """The textbook loop for a paired design: draw seeds, draw items, and take the same draw for both
    arms (the k-th run of each arm is the same seed, the j-th item the same question)."""
    seeds, items = a.shape
    out = []
    for _ in range(resamples):
        s = rng.integers(0, seeds, seeds) if seeds > 1 else [0]
        i = rng.integers(0, items, items)
        out.append(np.mean([b[k, i].mean() - a[k, i].mean() for k in s]))
    return np.percentile(out, [2.5, 97.5])


def _shared_effects(seeds: int, items: int, gap: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Two arms that share a strong seed effect (a seed's runs are both good or both poor) and item effect
    (a hard question is hard for both), B better by about `gap`: where pairing matters most."""
    seed_level = np.linspace(-1.5, 1.5, seeds)[:, None] if seeds > 1 else np.zeros((1, 1))
    item_level = rng.normal(0, 1.5, (1, items))
    noise = rng.random((2, seeds, items))
    p = 1 / (1 + np.exp(-(seed_level + item_level)))
    a = (noise[0] < p).astype(np.int8)
    b = (noise[1] < np.clip(p + gap, 0, 1)).astype(np.int8)
    return a, b


@pytest.mark.parametrize("seeds", [1, 3])
def test_bootstrap_interval_agrees_with_a_plain_paired_loop(seeds):
    a, b = _shared_effects(seeds, 300, 0.05, np.random.default_rng(5))
    low, high = paired_bootstrap(a, b, resamples=4000)
    ref_low, ref_high = _plain_bootstrap(a, b, 4000, np.random.default_rng(9))
    assert abs(low - ref_low) < 0.01 and abs(high - ref_high) < 0.01  # Monte Carlo error of 4000 draws
    assert low < (b.mean() - a.mean()) < high
    if seeds == 1:
        return
    # Unpaired, the shared seed effect would widen the interval: the comparison above has teeth.
    rng = np.random.default_rng(9)
    unpaired = [
        b[rng.integers(0, seeds, seeds)][:, rng.integers(0, 300, 300)].mean()
        - a[rng.integers(0, seeds, seeds)][:, rng.integers(0, 300, 300)].mean()
        for _ in range(2000)
    ]
    assert np.subtract(*np.percentile(unpaired, [97.5, 2.5])) > 1.5 * (ref_high - ref_low)


def test_identical_arms_over_three_seeds_give_an_interval_of_zero():
    a, _ = _shared_effects(3, 200, 0.0, np.random.default_rng(2))
    assert paired_bootstrap(a, a.copy(), resamples=2000) == (0.0, 0.0)


def _runs(matrix, prefix):
    return [
        RunVerdicts(
            f"{prefix}{k}",
            {f"i{j}": bool(v) for j, v in enumerate(row)},
            {f"i{j}": {"task": "xy"[j % 2]} for j in range(len(row))},
        )
        for k, row in enumerate(matrix)
    ]


def test_compare_arms_counts_discordant_items_per_row():
    a = [[1, 1, 0, 0, 1, 0, 1, 0]]
    b = [[1, 0, 1, 1, 1, 1, 1, 0]]
    rows = {r.row: r for r in compare_arms(_runs(a, "a"), _runs(b, "b"), resamples=500)}
    assert rows["overall"].discordant == (1, 3) and rows["overall"].delta == pytest.approx(2 / 8)
    assert rows["overall"].p_mcnemar == pytest.approx(binomtest(1, 4, 0.5).pvalue)
    assert rows["task: x"].items == 4 and rows["task: x"].discordant == (0, 1)  # items 0, 2, 4, 6: item 2
    assert rows["task: y"].discordant == (1, 2)  # items 1, 3, 5, 7: 1 against 3 and 5


def test_identical_runs_give_zero_and_an_interval_of_zero():
    a = [[1, 0, 1, 1, 0, 0, 1, 0, 1, 1]]
    (overall, *_) = compare_arms(_runs(a, "a"), _runs(a, "b"), resamples=500)
    assert overall.delta == 0 and overall.low == 0 and overall.high == 0 and overall.p_mcnemar == 1.0


def test_arms_of_unequal_size_or_other_items_are_refused():
    from store_schema.errors import UserError

    with pytest.raises(UserError, match="pair by seed"):
        compare_arms(_runs([[1, 0]], "a"), _runs([[1, 0], [0, 1]], "b"))
    other = [RunVerdicts("b0", {"z0": True, "z1": False}, {"z0": {}, "z1": {}})]
    with pytest.raises(UserError, match="other items"):
        compare_arms(_runs([[1, 0]], "a"), other)


def _eval_folder(path, answers):
    items = [EvalItem(f"q{i}", None, "?", "yes", groups={"task": "t" + str(i % 2)}) for i in range(len(answers))]
    write_outputs(path, "synth", items, {f"q{i}": a for i, a in enumerate(answers)})
    return path


def test_eval_compare_prints_and_writes_the_paired_table(tmp_path):
    base = _eval_folder(tmp_path / "base", ["yes", "no", "no", "no", "yes", "no"] * 5)
    coat = _eval_folder(tmp_path / "coat", ["yes", "yes", "yes", "no", "yes", "no"] * 5)
    result = cli("eval", "compare", base, coat, "--resamples", 1000)
    assert "coat − base" in result.output and "McNemar p" in result.output
    table = (base / "compare-paired.md").read_text()
    expected_p = binomtest(0, 10, 0.5).pvalue  # coat right where base is wrong on 10 items, never the reverse
    assert "| overall | 30 | 33.3 | 66.7 | +33.3 |" in table and f"{expected_p:.3g}" in table
    row = json.loads((coat / "predictions.jsonl").read_text().splitlines()[0])
    assert row["groups"] == {"task": "t0"}


def test_eval_compare_with_arms_of_several_seeds(tmp_path):
    arms = {}
    for arm, flip in (("base", 0), ("coat", 2)):
        folders = []
        for seed in range(3):
            answers = ["yes" if (i + seed) % 4 < 1 + flip else "no" for i in range(40)]
            folders.append(str(_eval_folder(tmp_path / f"{arm}{seed}", answers)))
        arms[arm] = ",".join(folders)
    result = cli("eval", "compare", "--group", f"base={arms['base']}", "--group", f"coat={arms['coat']}")
    assert "coat − base" in result.output
    table = (tmp_path / "base0" / "compare-paired.md").read_text()
    assert "| overall | 40 | 25.0 | 75.0 | +50.0 |" in table  # McNemar is for one run per arm: left blank


def test_compare_refuses_what_does_not_pair(tmp_path):
    """Other questions under the same ids, a repeated id, a verdict that is the string "false", no items, and
    evaluations of different manifests: each one line, exit 2, nothing written."""
    from tests.refusals import error_line, tree_state

    base = _eval_folder(tmp_path / "base", ["yes", "no"] * 5)
    other = tmp_path / "other"  # the same ids, other questions (other references)
    items = [EvalItem(f"q{i}", None, "?", "no") for i in range(10)]
    write_outputs(other, "synth", items, {f"q{i}": "no" for i in range(10)})
    twice = _eval_folder(tmp_path / "twice", ["yes", "no"] * 5)
    rows = (twice / "predictions.jsonl").read_text().splitlines()
    (twice / "predictions.jsonl").write_text("\n".join([*rows, rows[3]]) + "\n")
    text = _eval_folder(tmp_path / "text", ["yes", "no"] * 5)
    rows = [json.loads(r) for r in (text / "predictions.jsonl").read_text().splitlines()]
    rows[1]["correct"] = "false"
    (text / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    empty = tmp_path / "empty"
    write_outputs(empty, "synth", [], {})
    manifests = []
    for name, digest in (("m1", "a" * 64), ("m2", "b" * 64)):
        folder = _eval_folder(tmp_path / name, ["yes", "no"] * 5)
        (folder / "eval.json").write_text(json.dumps({"benchmark": "synth", "manifest_sha256": digest}))
        manifests.append(folder)
    before = tree_state(tmp_path)
    cases = [
        ((base, other), "other reference answers"),
        ((base, twice), "again (first on line 4)"),
        ((base, text), "'false', not true or false"),
        ((base, empty), "no scored items"),
        (tuple(manifests), "different manifests"),
    ]
    for folders, says in cases:
        error_line(cli("eval", "compare", *folders, expect=2), 2, says)
    assert tree_state(tmp_path) == before
