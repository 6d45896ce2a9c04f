"""The fifth registration's λ dose-response: its arms, a finished confirmatory folder taking them, and its
analysis (per-seed least-squares slopes, the sign-flip test over seeds) checked against scipy."""

import numpy as np
import pytest
from scipy.stats import linregress, permutation_test

from pipeline.confirm import Confirm
from pipeline.confirm_report import ALL, ConfirmResults, dose_arms, dose_slopes, dose_verdict
from pipeline.quickstart_setup import ConfirmConfig, arm_settings, dose_arm
from stages.config_files import config_dict, dump_yaml
from store_schema.errors import UserError


def test_dose_arms_train_coat_at_their_own_lambda_and_nothing_else():
    cfg = ConfirmConfig(doses=(0.3, 3.0))
    assert cfg.arms == ("base", "control", "coat", "oracle", "coat-lambda0.3", "coat-lambda3")
    assert arm_settings(dose_arm(0.3)) == {"model": {"distill_weight": 0.3}}
    assert arm_settings("coat-lambda3") == {"model": {"distill_weight": 3.0}}
    assert dose_arms(cfg) == {0.0: "control", 0.3: "coat-lambda0.3", 1.0: "coat", 3.0: "coat-lambda3"}
    assert ConfirmConfig().arms == ("base", "control", "coat", "oracle")  # the fourth's design has none
    for bad in ((1.0,), (0.0,), (0.3, 0.3), (-1.0,)):
        with pytest.raises(ValueError, match="doses"):
            ConfirmConfig(doses=bad)


def test_a_finished_folder_takes_added_doses_but_no_other_change(tmp_path):
    fourth = config_dict(ConfirmConfig())
    del fourth["doses"], fourth["clip_seconds"]  # the fourth's folder was made before these fields existed
    (tmp_path / "quickstart.yaml").write_text(dump_yaml(fourth))
    Confirm(tmp_path, ConfirmConfig()).check_settings()
    Confirm(tmp_path, ConfirmConfig(doses=(0.3, 3.0))).check_settings()  # the fifth adds its arms to it
    Confirm(tmp_path, ConfirmConfig(doses=(3.0, 0.3, 2.0))).check_settings()  # more still
    with pytest.raises(UserError, match="other settings"):
        Confirm(tmp_path, ConfirmConfig(doses=(0.3,))).check_settings()  # runs it holds would drop out
    with pytest.raises(UserError, match="seeds"):
        Confirm(tmp_path, ConfirmConfig(seeds=7, doses=(0.3, 3.0, 2.0))).check_settings()
    with pytest.raises(UserError, match="lr"):
        Confirm(tmp_path, ConfirmConfig(doses=(0.3, 3.0, 2.0), train={"lr": 1e-3})).check_settings()


def results(accuracy: dict[str, list[float]]) -> ConfirmResults:
    seeds = len(next(iter(accuracy.values())))
    rows = {arm: [{ALL: a} for a in values] for arm, values in accuracy.items()}
    return ConfirmResults(seeds, [ALL], {ALL: 0.5}, 0.5, rows, {}, {}, {})


def test_the_slopes_and_their_test_agree_with_scipy():
    rng = np.random.default_rng(3)
    weights = {0.0: "control", 0.3: "coat-lambda0.3", 1.0: "coat", 3.0: "coat-lambda3"}
    accuracy = {arm: list(rng.uniform(0.4, 0.7, 6)) for arm in weights.values()}
    slopes = dose_slopes(results(accuracy), weights)
    for seed, slope in enumerate(slopes):
        fit = linregress(list(weights), [100 * accuracy[arm][seed] for arm in weights.values()])
        assert slope == pytest.approx(fit.slope)
    exact = permutation_test(
        (np.array(slopes),), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    assert f"sign-flip p over 6 seeds {exact.pvalue:.3g}" in dose_verdict(slopes)


def test_a_dose_effect_in_every_seed_is_found_and_none_is_not():
    weights = {0.0: "control", 0.3: "coat-lambda0.3", 1.0: "coat", 3.0: "coat-lambda3"}
    noise = np.random.default_rng(0).normal(0, 0.005, (4, 6))
    rising = {arm: list(0.5 + 0.02 * w + noise[i]) for i, (w, arm) in enumerate(weights.items())}
    slopes = dose_slopes(results(rising), weights)
    assert np.mean(slopes) == pytest.approx(2.0, abs=0.5)  # 0.02 accuracy per unit λ = 2 points
    assert "dose-dependent, accuracy rises with λ" in dose_verdict(slopes)
    flat = {arm: list(0.5 + noise[i]) for i, arm in enumerate(weights.values())}
    assert "no detectable trend" in dose_verdict(dose_slopes(results(flat), weights))


def test_whether_the_baseline_learns_a_type_is_its_seeds_above_chance_tested_by_sign_flips():
    """The sixth registration's descriptive check (in this file for its shared helper: per-seed results)."""
    from pipeline.confirm_report import learns_rows

    rng = np.random.default_rng(5)
    accuracy = {"base": [{"louder_half": a, ALL: a} for a in rng.uniform(0.45, 0.65, 6)]}
    r = ConfirmResults(6, ["louder_half", ALL], {"louder_half": 0.52, ALL: 0.47}, 0.5, accuracy, {}, {}, {})
    task, chance, _, above, p = learns_rows(r)[0]
    differences = [100 * (s["louder_half"] - 0.52) for s in accuracy["base"]]
    exact = permutation_test(
        (np.array(differences),), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    assert (task, chance, above) == ("louder_half", "52.0", f"{np.mean(differences):+.1f}")
    assert float(p) == pytest.approx(exact.pvalue, rel=1e-2)
