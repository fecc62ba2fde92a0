"""The report's statistics against hand-computed values (formulas) and lifelines/scipy on hand-made examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from orchestrator.report import (
    DEFAULT_METHODS,
    IntervalMethods,
    bootstrap_mean_ci,
    bootstrap_mean_diff_ci,
    clopper_pearson_ci,
    jeffreys_ci,
    kaplan_meier,
    logrank,
    mid_p_ci,
    newcombe_diff_ci,
    newcombe_exact_diff_ci,
    newcombe_jeffreys_diff_ci,
    newcombe_mid_p_diff_ci,
    seeds_to_separate_means,
    seeds_to_separate_rates,
    t_mean_ci,
    welch_diff_ci,
    wilson_ci,
)

Z = 1.959963984540054


def _wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n", "low", "high"), [(0, 3, 0.0, 0.5615), (1, 3, 0.0615, 0.7923), (3, 3, 0.4385, 1.0), (5, 10, 0.2366, 0.7634)])
def test_wilson_ci_matches_published_values(k: int, n: int, low: float, high: float) -> None:
    interval = wilson_ci(k, n)
    assert interval.estimate == k / n
    assert interval.low == pytest.approx(low, abs=1e-4)
    assert interval.high == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 2), (2, 7), (7, 7), (13, 40)])
def test_wilson_ci_matches_the_formula(k: int, n: int) -> None:
    low, high = _wilson_by_hand(k, n)
    interval = wilson_ci(k, n)
    assert interval.low == pytest.approx(max(0.0, low), abs=1e-12)
    assert interval.high == pytest.approx(min(1.0, high), abs=1e-12)


def test_wilson_ci_zero_of_three_is_not_a_point() -> None:
    # A bootstrap over 0/3 binary outcomes gives [0, 0]; Wilson does not.
    interval = wilson_ci(0, 3)
    assert interval.low == 0.0 and interval.high > 0.5


def test_wilson_ci_with_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="between 0 and n=3"):
        wilson_ci(4, 3)
    assert wilson_ci(0, 0).note == "no runs" and not wilson_ci(0, 0).has_bounds


def test_newcombe_diff_ci_matches_newcombe_1998_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II, example (a): 56/70 - 48/80, method 10.
    interval = newcombe_diff_ci(56, 70, 48, 80)
    assert interval.estimate == pytest.approx(0.2)
    assert interval.low == pytest.approx(0.0524, abs=1e-4)
    assert interval.high == pytest.approx(0.3339, abs=1e-4)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(0, 3, 3, 3), (1, 3, 2, 3), (0, 3, 0, 3), (2, 5, 1, 4)])
def test_newcombe_diff_ci_matches_the_formula(k1: int, n1: int, k2: int, n2: int) -> None:
    l1, u1 = (max(0.0, b) if i == 0 else min(1.0, b) for i, b in enumerate(_wilson_by_hand(k1, n1)))
    l2, u2 = (max(0.0, b) if i == 0 else min(1.0, b) for i, b in enumerate(_wilson_by_hand(k2, n2)))
    p1, p2 = k1 / n1, k2 / n2
    interval = newcombe_diff_ci(k1, n1, k2, n2)
    assert interval.low == pytest.approx(p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), abs=1e-9)
    assert interval.high == pytest.approx(p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2), abs=1e-9)


def test_newcombe_diff_ci_all_collapsed_vs_none_excludes_zero() -> None:
    interval = newcombe_diff_ci(0, 3, 3, 3)
    assert interval.estimate == -1.0 and interval.high < 0


def test_welch_diff_ci_matches_the_formula() -> None:
    a, b = [1.0, 2.0, 3.0], [2.0, 3.0, 5.0]
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    interval = welch_diff_ci(a, b)
    assert interval.estimate == pytest.approx(-4 / 3)
    assert interval.low == pytest.approx(-4 / 3 - half)
    assert interval.high == pytest.approx(-4 / 3 + half)


def test_t_mean_ci_matches_the_formula() -> None:
    values = [0.5, 0.6, 0.7]
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    interval = t_mean_ci(values)
    assert (interval.low, interval.high) == pytest.approx((0.6 - half, 0.6 + half))


@pytest.mark.parametrize(
    ("values", "note"),
    [([], "no values"), ([0.4], "one value"), ([0.5, 0.5, 0.5], "all 3 values are identical")],
)
@pytest.mark.parametrize("method", [bootstrap_mean_ci, t_mean_ci])
def test_mean_ci_says_why_it_has_no_interval(method, values: list[float], note: str) -> None:  # noqa: ANN001
    interval = method(values)
    assert interval.note == note
    assert not interval.has_bounds
    assert interval.n == len(values)
    assert (math.isnan(interval.estimate) if not values else interval.estimate == values[0])


def test_bootstrap_mean_ci_matches_scipy_bca() -> None:
    values = [0.52, 0.61, 0.58, 0.70, 0.49, 0.66]
    expected = stats.bootstrap(
        (values,), np.mean, n_resamples=9999, method="BCa", random_state=np.random.default_rng(0)
    ).confidence_interval
    interval = bootstrap_mean_ci(values)
    assert interval.method == "bootstrap-bca"
    assert interval.estimate == pytest.approx(np.mean(values))
    assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high), abs=1e-3)
    assert interval.note == ""


def test_bootstrap_mean_ci_with_three_values_warns_it_is_narrow() -> None:
    interval = bootstrap_mean_ci([0.5, 0.6, 0.9])
    assert interval.has_bounds and 0.5 <= interval.low <= interval.high <= 0.9
    assert "cannot be wider than their range" in interval.note


@pytest.mark.parametrize("method", [welch_diff_ci, bootstrap_mean_diff_ci])
def test_mean_diff_ci_without_spread_or_values(method) -> None:  # noqa: ANN001
    assert method([0.5], [0.4, 0.6]).note == "a group has fewer than 2 values"
    assert method([0.5, 0.5], [0.4, 0.4]).note == "every value in each group is identical"
    assert method([], [0.4]).note == "a group has no values"


def test_bootstrap_mean_diff_ci_covers_a_clear_difference() -> None:
    interval = bootstrap_mean_diff_ci([0.8, 0.82, 0.85, 0.79], [0.5, 0.52, 0.49, 0.55])
    assert interval.low > 0 and interval.contains(interval.estimate)


def test_kaplan_meier_median_of_the_notes_example() -> None:
    # shared/notes/libraries.md: KM median of [135, 140, 200c, 200c] = 140.
    curve = kaplan_meier([135, 140, 200, 200], [True, True, False, False])
    assert curve.median_steps == 140
    assert curve.survival == pytest.approx((1.0, 0.75, 0.5, 0.5))
    assert (curve.n, curve.n_events) == (4, 2)


def test_kaplan_meier_median_not_reached_without_enough_collapses() -> None:
    assert kaplan_meier([100, 200, 200], [True, False, False]).median_steps is None
    assert kaplan_meier([], []).median_steps is None


def test_kaplan_meier_band_is_the_exponential_greenwood_interval() -> None:
    # 3 runs, collapses at 40 and 50, one censored at 60. At step 40, S = 2/3 and the log(-log S) interval is
    # log(-log S) -+ 1.96 sqrt(sum d / (n (n - d))) / |log S|, with the sum 1 / (3 * 2).
    curve = kaplan_meier([40, 50, 60], [True, True, False])
    s = 2 / 3
    centre, half = math.log(-math.log(s)), 1.959964 * math.sqrt(1 / 6) / abs(math.log(s))
    assert curve.steps == (0.0, 40.0, 50.0, 60.0)
    assert curve.low[1] == pytest.approx(math.exp(-math.exp(centre + half)), rel=1e-4)
    assert curve.high[1] == pytest.approx(math.exp(-math.exp(centre - half)), rel=1e-4)
    assert (curve.low[0], curve.high[0]) == (1.0, 1.0)
    assert all(lo <= est <= hi for lo, est, hi in zip(curve.low, curve.survival, curve.high))
    assert kaplan_meier([], []).low == ()


def test_logrank_matches_the_hand_computed_statistic() -> None:
    # A collapses at 1 and 2, B at 3 and 4: O_A - E_A = 2 - (1/2 + 1/3), V = 1/4 + 2/9.
    expected = (2 - 5 / 6) ** 2 / (1 / 4 + 2 / 9)
    result = logrank([([1, 2], [True, True]), ([3, 4], [True, True])])
    assert result.statistic == pytest.approx(expected)
    assert result.p_value == pytest.approx(stats.chi2.sf(expected, 1))


def test_logrank_of_three_groups_uses_the_multivariate_test() -> None:
    groups = [([1, 2], [True, True]), ([3, 4], [True, True]), ([5, 9], [True, False])]
    result = logrank(groups)
    assert result.n_groups == 3 and 0 < result.p_value < 1
    two = logrank(groups[:2])
    from lifelines.statistics import multivariate_logrank_test

    multi = multivariate_logrank_test([1, 2, 3, 4], [0, 0, 1, 1], [True] * 4)
    assert two.statistic == pytest.approx(multi.test_statistic)


@pytest.mark.parametrize(
    ("groups", "note"),
    [([([100, 200], [False, False]), ([150], [False])], "no run collapsed"), ([([1], [True])], "fewer than two groups")],
)
def test_logrank_says_why_it_cannot_run(groups, note: str) -> None:  # noqa: ANN001
    result = logrank(groups)
    assert (result.p_value, result.note) == (None, note)


def test_interval_methods_are_swappable() -> None:
    methods = IntervalMethods(mean=bootstrap_mean_ci, rate=wilson_ci, mean_diff=bootstrap_mean_diff_ci)
    assert methods.mean([0.1, 0.2, 0.4]).method == "bootstrap-bca"
    assert methods.rate(1, 3).method == "wilson"
    assert methods.rate_diff(1, 3, 2, 3).method == "newcombe-mid-p"


def test_default_methods_are_the_ones_the_coverage_study_validated() -> None:
    # benchmarks/validity.py: the bootstrap mean and the Wilson-based intervals covered less than 90% at 3 seeds.
    assert DEFAULT_METHODS.mean([0.1, 0.2, 0.4]).method == "t"
    assert DEFAULT_METHODS.rate(1, 3).method == "mid-p"
    assert DEFAULT_METHODS.mean_diff([0.1, 0.2, 0.4], [0.3, 0.5, 0.6]).method == "welch-t"
    assert DEFAULT_METHODS.rate_diff(1, 3, 2, 3).method == "newcombe-mid-p"


@pytest.mark.parametrize(("k", "n"), [(0, 3), (1, 3), (2, 3), (3, 3), (0, 5), (4, 5), (7, 20), (19, 20)])
def test_clopper_pearson_ci_matches_scipy_exact(k: int, n: int) -> None:
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    interval = clopper_pearson_ci(k, n)
    assert interval.estimate == k / n and interval.method == "clopper-pearson"
    assert interval.low == pytest.approx(expected.low, abs=1e-9)
    assert interval.high == pytest.approx(expected.high, abs=1e-9)


@pytest.mark.parametrize("n", [3, 5, 20])
def test_clopper_pearson_ci_at_none_and_all_has_closed_form_bounds(n: int) -> None:
    # At 0/n the upper bound solves (1 - p)^n = 0.025; at n/n the lower bound solves p^n = 0.025.
    assert clopper_pearson_ci(0, n).high == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-12)
    assert clopper_pearson_ci(0, n).low == 0.0
    assert clopper_pearson_ci(n, n).low == pytest.approx(0.025 ** (1 / n), abs=1e-12)
    assert clopper_pearson_ci(n, n).high == 1.0


def test_clopper_pearson_ci_covers_a_rare_rate_where_wilson_misses() -> None:
    # 1 collapse in 3 runs of a level that collapses 5% of the time: Wilson's lower bound (6%) excludes 5%.
    assert not wilson_ci(1, 3).contains(0.05)
    assert clopper_pearson_ci(1, 3).contains(0.05)


def test_clopper_pearson_ci_with_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="between 0 and n=3"):
        clopper_pearson_ci(-1, 3)
    assert clopper_pearson_ci(0, 0).note == "no runs" and not clopper_pearson_ci(0, 0).has_bounds


@pytest.mark.parametrize(("k", "n"), [(1, 3), (2, 3), (1, 5), (4, 5), (7, 20)])
def test_jeffreys_ci_is_the_equal_tailed_beta_posterior_interval(k: int, n: int) -> None:
    low, high = stats.beta(k + 0.5, n - k + 0.5).interval(0.95)
    interval = jeffreys_ci(k, n)
    assert (interval.low, interval.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert interval.method == "jeffreys"


def test_jeffreys_ci_at_none_and_all_is_closed_at_the_edge() -> None:
    assert jeffreys_ci(0, 3).low == 0.0 and jeffreys_ci(3, 3).high == 1.0
    assert jeffreys_ci(0, 3).high == pytest.approx(stats.beta.ppf(0.975, 0.5, 3.5), abs=1e-12)


@pytest.mark.parametrize(("k", "n"), [(1, 3), (2, 3), (0, 3), (3, 3), (1, 5), (4, 5), (7, 20)])
def test_mid_p_ci_solves_its_defining_equations(k: int, n: int) -> None:
    interval = mid_p_ci(k, n)
    binom = stats.binom
    if k > 0:
        assert binom.sf(k, n, interval.low) + binom.pmf(k, n, interval.low) / 2 == pytest.approx(0.025, abs=1e-10)
    else:
        assert interval.low == 0.0
    if k < n:
        assert binom.cdf(k - 1, n, interval.high) + binom.pmf(k, n, interval.high) / 2 == pytest.approx(0.025, abs=1e-10)
    else:
        assert interval.high == 1.0


def test_mid_p_ci_of_none_of_three_by_hand() -> None:
    # At 0/n the upper bound solves (1 - p)^n / 2 = 0.025: 1 - 0.05^(1/3) for n = 3.
    assert mid_p_ci(0, 3).high == pytest.approx(1 - 0.05 ** (1 / 3), abs=1e-12)
    # Mid-p lies inside Clopper-Pearson (half of P(X = k) is left out of each tail).
    cp, mid = clopper_pearson_ci(1, 3), mid_p_ci(1, 3)
    assert cp.low < mid.low < 1 / 3 < mid.high < cp.high
    with pytest.raises(ValueError, match="between 0 and n=3"):
        mid_p_ci(4, 3)


@pytest.mark.parametrize(
    ("method", "rate"), [(newcombe_jeffreys_diff_ci, jeffreys_ci), (newcombe_mid_p_diff_ci, mid_p_ci), (newcombe_diff_ci, wilson_ci)]
)
def test_square_and_add_intervals_combine_their_rate_intervals(method, rate) -> None:  # noqa: ANN001
    for k1, n1, k2, n2 in [(0, 3, 2, 3), (1, 3, 3, 3), (2, 5, 5, 5)]:
        first, second = rate(k1, n1), rate(k2, n2)
        p1, p2 = k1 / n1, k2 / n2
        interval = method(k1, n1, k2, n2)
        assert interval.low == pytest.approx(p1 - p2 - math.hypot(p1 - first.low, second.high - p2), abs=1e-12)
        assert interval.high == pytest.approx(p1 - p2 + math.hypot(first.high - p1, p2 - second.low), abs=1e-12)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(0, 3, 2, 3), (0, 3, 3, 3), (1, 3, 1, 3), (2, 5, 5, 5), (7, 20, 19, 20)])
def test_newcombe_exact_diff_ci_matches_the_formula_on_scipy_exact_limits(k1: int, n1: int, k2: int, n2: int) -> None:
    first = stats.binomtest(k1, n1).proportion_ci(method="exact")
    second = stats.binomtest(k2, n2).proportion_ci(method="exact")
    p1, p2 = k1 / n1, k2 / n2
    interval = newcombe_exact_diff_ci(k1, n1, k2, n2)
    assert interval.estimate == pytest.approx(p1 - p2)
    assert interval.low == pytest.approx(p1 - p2 - math.hypot(p1 - first.low, second.high - p2), abs=1e-9)
    assert interval.high == pytest.approx(p1 - p2 + math.hypot(first.high - p1, p2 - second.low), abs=1e-9)
    assert interval.method == "newcombe-exact" and interval.n == min(n1, n2)


def test_newcombe_exact_diff_ci_covers_where_the_wilson_based_interval_misses() -> None:
    # A remedy that never collapses (0/3) against a baseline that collapses 95% of the time, sampled as 2 of 3.
    assert not newcombe_diff_ci(0, 3, 2, 3).contains(-0.95)
    assert newcombe_exact_diff_ci(0, 3, 2, 3).contains(-0.95)
    # Exact limits cannot separate 0/3 from 3/3 (Fisher's exact test gives p = 0.1); with 5 runs each they can.
    assert newcombe_exact_diff_ci(0, 3, 3, 3).high > 0 and stats.fisher_exact([[0, 3], [3, 0]]).pvalue == pytest.approx(0.1)
    assert newcombe_exact_diff_ci(0, 5, 5, 5).high < 0
    assert newcombe_exact_diff_ci(0, 0, 1, 3).note == "a group has no runs"


@pytest.mark.parametrize(("effect", "seeds"), [(0.5, 64), (0.8, 26), (1.0, 17), (2.0, 6)])
def test_seeds_to_separate_means_matches_cohens_tables(effect: float, seeds: int) -> None:
    # Two-sided 5% two-sample t test, 80% power: n per group for a standardised difference d (Cohen 1988, 2.4.1).
    assert seeds_to_separate_means(effect, 1.0) == seeds
    assert seeds_to_separate_means(-effect * 0.04, 0.04) == seeds


def test_seeds_to_separate_means_reaches_the_power_it_promises() -> None:
    n = seeds_to_separate_means(0.05, 0.06)
    df = 2 * n - 2

    def power(m: int) -> float:
        crit = stats.t.ppf(0.975, 2 * m - 2)
        nc = 0.05 / 0.06 * math.sqrt(m / 2)
        return stats.nct.sf(crit, 2 * m - 2, nc) + stats.nct.cdf(-crit, 2 * m - 2, nc)

    assert df > 0 and power(n) >= 0.8 > power(n - 1)


@pytest.mark.parametrize(("difference", "sd"), [(0.0, 0.1), (0.1, 0.0), (math.nan, 0.1), (1e-4, 1.0)])
def test_seeds_to_separate_means_without_an_answer(difference: float, sd: float) -> None:
    # No difference, no spread, or more than 1000 seeds: no number to print.
    assert seeds_to_separate_means(difference, sd) is None


@pytest.mark.parametrize(("p1", "p2", "seeds"), [(0.5, 0.25, 66), (2 / 3, 1.0, 25), (0.0, 1.0, 4), (0.2, 0.6, 28)])
def test_seeds_to_separate_rates_matches_fleiss_with_continuity_correction_by_hand(p1: float, p2: float, seeds: int) -> None:
    z_a, z_b = 1.959963984540054, 0.8416212335729143
    pbar = (p1 + p2) / 2
    n0 = ((z_a * math.sqrt(2 * pbar * (1 - pbar)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) / (p1 - p2)) ** 2
    corrected = n0 / 4 * (1 + math.sqrt(1 + 4 / (n0 * abs(p1 - p2)))) ** 2
    assert math.ceil(corrected) == seeds
    assert seeds_to_separate_rates(p1, p2) == seeds == seeds_to_separate_rates(p2, p1)


def test_seeds_to_separate_rates_never_asks_for_fewer_runs_than_an_exact_test_needs() -> None:
    # 0% vs 100% seen: Fisher's exact test cannot reject with 3 runs each (p = 0.1) but can with 4 (p = 0.029).
    n = seeds_to_separate_rates(0.0, 1.0)
    assert stats.fisher_exact([[0, n - 1], [n - 1, 0]]).pvalue > 0.05
    assert stats.fisher_exact([[0, n], [n, 0]]).pvalue < 0.05


def test_seeds_to_separate_rates_without_an_answer() -> None:
    assert seeds_to_separate_rates(1 / 3, 1 / 3) is None
    assert seeds_to_separate_rates(0.50, 0.51) is None
