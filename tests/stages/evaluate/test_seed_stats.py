"""Seeds as the unit: the sign-flip test, Holm and the detectable effect against independent computations
(scipy, the definitions), and the test's false-positive rate under seed-to-seed variation."""

import numpy as np
import pytest
from scipy import stats

from stages.evaluate.seed_stats import (
    VarianceComponents,
    holm,
    minimum_detectable_effect,
    seed_differences,
    sign_flip_p,
)


@pytest.mark.parametrize("seed", range(5))
def test_sign_flip_p_is_scipys_exact_permutation_test(seed):
    d = np.random.default_rng(seed).normal(0.01 * (seed - 2), 0.03, size=6)  # means of both signs
    theirs = stats.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    ).pvalue
    assert sign_flip_p(d) == pytest.approx(theirs, abs=1e-12)


def test_sign_flip_p_has_its_floor_at_two_in_two_to_the_seeds():
    assert sign_flip_p([0.1, 0.2, 0.3]) == pytest.approx(2 / 8)
    assert sign_flip_p([0.1, 0.2, 0.3, 0.1, 0.2, 0.3]) == pytest.approx(2 / 64)


def test_holm_rejects_exactly_what_the_step_down_rule_rejects():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = list(rng.uniform(0, 0.1, size=rng.integers(1, 8)))
        adjusted = holm(p)
        for alpha in (0.01, 0.025, 0.05, 0.1):
            order = np.argsort(p)
            rejected = set()
            for rank, i in enumerate(order):  # the definition: stop at the first p_(k) above alpha / (m - k + 1)
                if p[i] > alpha / (len(p) - rank):
                    break
                rejected.add(int(i))
            assert {i for i, q in enumerate(adjusted) if q <= alpha} == rejected


def test_the_detectable_effect_is_the_normal_power_formula_on_a_constructed_design():
    components = VarianceComponents(between_seeds=0.0004, within_items=0.5)
    se = np.sqrt((0.0004 + 0.5 / 1200) / 6)
    expected = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * se
    assert minimum_detectable_effect(components, seeds=6, items=1200) == pytest.approx(expected, rel=1e-9)
    # at that effect, a z test on the seeds' mean rejects 80 % of the time
    rng = np.random.default_rng(1)
    means = rng.normal(expected, se, size=20_000)
    assert np.mean(np.abs(means / se) > stats.norm.ppf(0.975)) == pytest.approx(0.8, abs=0.01)


def test_observed_components_come_back_from_simulated_runs():
    rng = np.random.default_rng(2)
    seeds, items, tau = 400, 300, 0.05
    shift = rng.normal(0, tau, size=(seeds, 1))  # each seed's own true difference
    a = rng.random((seeds, items)) < 0.5
    b = rng.random((seeds, items)) < 0.5 + shift
    found = VarianceComponents.observed(a.astype(np.int8), b.astype(np.int8))
    assert found.between_seeds == pytest.approx(tau**2, rel=0.25)
    assert found.within_items == pytest.approx(0.5, rel=0.05)
    assert seed_differences(a, b).shape == (seeds,)


def test_under_no_true_difference_with_seed_variation_the_test_keeps_its_level():
    """6 seeds whose true differences vary (τ = 4 points) around 0, 1200 items each: the sign-flip test's
    false-positive rate at 5 % stays within its Monte-Carlo error of 5 %."""
    rng = np.random.default_rng(3)
    trials, seeds = 4000, 6
    components = VarianceComponents(between_seeds=0.04**2, within_items=0.5)
    d = rng.normal(0, components.standard_error(1, 1200), size=(trials, seeds))
    rejected = np.mean([sign_flip_p(row) <= 0.05 for row in d])
    assert rejected <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / trials)


def test_pooled_mcnemar_over_rejects_where_the_seed_level_test_keeps_its_level():
    """The reason for seeds as the unit, simulated: arms equal on average, each seed's models differing by
    a random 5 points; McNemar on the items of all seeds pooled rejects far above 5 %."""
    from stages.evaluate.paired import mcnemar_exact

    rng = np.random.default_rng(4)
    trials, seeds, items = 400, 6, 200
    pooled = flips = 0
    for _ in range(trials):
        shift = rng.normal(0, 0.05, size=(seeds, 1))
        a = rng.random((seeds, items)) < 0.5 - shift / 2
        b = rng.random((seeds, items)) < 0.5 + shift / 2
        pooled += mcnemar_exact(int((a & ~b).sum()), int((~a & b).sum())) <= 0.05
        flips += sign_flip_p(seed_differences(a, b)) <= 0.05
    assert pooled / trials > 0.10, pooled / trials  # 0.148 with this draw: three times its level
    assert flips / trials <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / trials), flips / trials


def test_compare_arms_tests_the_seeds_differences_and_only_with_several_seeds():
    """eval compare's seed-level p is the sign-flip test of the per-seed differences, row by row."""
    from stages.evaluate.paired import RunVerdicts, compare_arms

    rng = np.random.default_rng(5)
    a, b = rng.random((6, 40)) < 0.5, rng.random((6, 40)) < 0.7

    def runs(matrix, prefix):
        return [
            RunVerdicts(f"{prefix}{k}", {f"i{j}": bool(v) for j, v in enumerate(row)}, {f"i{j}": {} for j in range(40)})
            for k, row in enumerate(matrix)
        ]

    overall = compare_arms(runs(a, "a"), runs(b, "b"), resamples=200)[0]
    d = b.mean(axis=1) - a.mean(axis=1)
    theirs = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    assert overall.p_seeds == pytest.approx(theirs, abs=1e-12)
    assert compare_arms(runs(a[:1], "a"), runs(b[:1], "b"), resamples=200)[0].p_seeds is None
