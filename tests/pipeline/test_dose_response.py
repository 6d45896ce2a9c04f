"""The fifth registration's λ dose-response: its arms, a finished confirmatory folder taking them, and its
analysis (per-seed least-squares slopes, the sign-flip test over seeds) checked against scipy."""

import numpy as np
import pytest
from scipy.stats import linregress, permutation_test

from pipeline.confirm import Confirm
from pipeline.confirm_report import ALL, ConfirmResults, dose_arms, dose_slopes, dose_verdict
from pipeline.quickstart_setup import ConfirmConfig, arm_settings, dose_arm
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
    Confirm(tmp_path, ConfirmConfig()).check_settings()  # the fourth's folder
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
