"""The report's statistics against hand-computed values (formulas) and lifelines/scipy on hand-made examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from orchestrator.report import (
    IntervalMethods,
    bootstrap_mean_ci,
    bootstrap_mean_diff_ci,
    kaplan_meier,
    logrank,
    newcombe_diff_ci,
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
    methods = IntervalMethods(mean=t_mean_ci, mean_diff=bootstrap_mean_diff_ci)
    assert methods.mean([0.1, 0.2, 0.4]).method == "t"
    assert methods.rate(1, 3).method == "wilson"
