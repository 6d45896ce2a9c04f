"""The fifth registration's pitch-class design (`quickstart --confirm --design pitch-class`): its arms, the
experts each trains on and the stores made for them, and a verdict read off its own gate and primary contrast."""

import json

import numpy as np
import pytest

from pipeline.confirm import Confirm
from pipeline.confirm_report import ALL, ConfirmResults, contrast_rows, read_confirm, verdict
from pipeline.quickstart_setup import DESIGNS, PitchClassConfig, arm_settings
from stages.config_files import config_dict
from stages.evaluate.paired import PairedDelta
from stages.evaluate.seed_stats import VarianceComponents
from stages.lab.synth_benchmark import load_synth
from stages.train.config import flatten_settings


def test_the_design_is_the_fourths_on_note_name_with_pitch_class_arms():
    cfg = DESIGNS["pitch-class"]()
    fourth = flatten_settings(config_dict(DESIGNS["fourth"]()))
    changed = {k: v for k, v in flatten_settings(config_dict(cfg)).items() if fourth.get(k) != v}
    assert changed == {"tasks": ["note_name"]}
    assert cfg.arms == ("control", "coat", "coat-pc", "oracle-pc")
    assert cfg.gate == ("control", "oracle-pc") and cfg.primary == ("coat", "coat-pc")
    assert cfg.extracted == ["mel", "pitch", "pitch-class"]  # every arm's stores, each extracted once
    # coat and control train on cents (the training default); the pitch-class arms on the pitch class
    assert cfg.training.experts == ["mel", "pitch"] and "experts" not in arm_settings("coat")
    assert arm_settings("coat-pc") == {"experts": ["mel", "pitch-class"]}
    assert arm_settings("oracle-pc") == {
        "experts": ["mel", "pitch-class"],
        "model": {"distill_weight": 0.0, "oracle": True},
    }
    with pytest.raises(ValueError, match="no λ arms"):
        PitchClassConfig(doses=(0.3,))


def _delta(delta: float, p: float) -> PairedDelta:
    components = VarianceComponents(between_seeds=0.004, within_items=0.2)
    return PairedDelta(ALL, 1200, 0.5, 0.5 + delta, delta, delta - 0.05, delta + 0.05, 0.5, (1, 1), p, components)


def _results(gate: float, gate_p: float, primary: float, primary_p: float) -> ConfirmResults:
    cfg = PitchClassConfig()
    contrasts = {pair: {ALL: _delta(0.01, 0.5)} for pair in cfg.contrasts}
    contrasts[cfg.gate] = {ALL: _delta(gate, gate_p)}
    contrasts[cfg.primary] = {ALL: _delta(primary, primary_p)}
    return ConfirmResults(6, [ALL], {ALL: 0.1}, 0.1, {}, contrasts, {}, {}, cfg.gate, cfg.primary)


def test_the_verdict_reads_the_designs_own_gate_and_primary():
    passed = " ".join(verdict(_results(0.20, 0.031, 0.08, 0.031)))
    assert "oracle (pitch class) − control on all 1200 test items +20.0" in passed
    assert "Primary (CoAT (pitch class) − CoAT, all test items): +8.0" in passed
    assert "CoAT (pitch class) is better than CoAT at the 5 % level" in passed
    assert "recovers" not in passed  # the primary is not against the control: no share of the oracle's gain
    failed = " ".join(verdict(_results(0.20, 0.31, 0.08, 0.031)))
    assert "No CoAT verdict is given" in failed and "Primary" not in failed
    rows = [row[0] for row in contrast_rows(_results(0.20, 0.031, 0.08, 0.031))]
    assert rows == [
        "oracle (pitch class) − control",
        "CoAT (pitch class) − CoAT",
        "CoAT − control",
        "CoAT (pitch class) − control",
    ]


def _small(seeds: int = 1) -> PitchClassConfig:
    return PitchClassConfig(seeds=seeds, train_clips=12, validation_clips=12, heldout_clips=12)


@pytest.mark.slow  # extracts three experts over three small splits: about 7 s
def test_the_stores_hold_every_arms_experts(tmp_path):
    """The extract phase writes `pitch` for the CoAT (cents) arm and `pitch-class` for the other two."""
    from store_schema.reader import ShardStore

    confirm = Confirm(tmp_path, _small())
    confirm.synth()
    confirm.extract()
    for folder, *_ in confirm.splits():
        store = ShardStore.for_tar(next(folder.glob("*.tar")))
        assert store.experts() == ["mel", "pitch", "pitch-class"], folder
        np.testing.assert_array_equal(store.expert("pitch-class").clip[:, :2], store.expert("pitch").clip[:])


def test_the_report_reads_the_designs_contrasts_from_the_runs(tmp_path):
    """read_confirm on a folder of made-up scores: the gate is oracle (pitch class) − control, the primary
    CoAT (pitch class) − CoAT, each Δ the per-seed difference of the runs' own predictions."""
    cfg = _small(seeds=2)
    confirm = Confirm(tmp_path, cfg)
    confirm.synth()
    ids = [(i.id, i.reference) for i in load_synth(confirm.heldout)]
    right = {"control": 2, "coat": 4, "coat-pc": 7, "oracle-pc": 10}  # items each arm gets right, of 12
    for name in cfg.run_names():
        arm = name.split("-seed")[0]
        run = confirm.runs / name
        (run / "eval").mkdir(parents=True)
        rows = [
            {"id": i, "reference": r, "groups": {"task": "note_name"}, "correct": n < right[arm]}
            for n, (i, r) in enumerate(ids)
        ]
        (run / "eval" / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        accuracy = right[arm] / len(ids)
        breakdown = {"note_name": {"n": len(ids), "accuracy": accuracy, "unanswered": 0}}
        (run / "eval" / "metrics.json").write_text(
            json.dumps({"accuracy": accuracy, "breakdowns": {"task": breakdown}})
        )
        (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "lm": 1.0, "val/validation/accuracy": 0.1}) + "\n")
    r = read_confirm(confirm, resamples=200)
    assert r.contrasts[r.gate][ALL].delta == pytest.approx(8 / 12) and r.gate == ("control", "oracle-pc")
    assert r.contrasts[r.primary][ALL].delta == pytest.approx(3 / 12) and r.primary == ("coat", "coat-pc")
