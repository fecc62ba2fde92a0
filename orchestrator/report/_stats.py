"""The report's statistics: intervals for means, rates and their differences, Kaplan-Meier and the log-rank test.

Each interval method is a small function returning an `Interval`, so that a coverage study can swap one for
another (`IntervalMethods`); `DEFAULT_METHODS` are the ones benchmarks/validity.py validated. With the few seeds a
GPU sweep affords (often 3), every method says when it cannot give an interval (one value, no spread) in
`Interval.note` instead of returning a misleading point.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "DEFAULT_METHODS",
    "Interval",
    "IntervalMethods",
    "LogRank",
    "Survival",
    "bootstrap_mean_ci",
    "bootstrap_mean_diff_ci",
    "clopper_pearson_ci",
    "jeffreys_ci",
    "kaplan_meier",
    "logrank",
    "mid_p_ci",
    "newcombe_diff_ci",
    "newcombe_exact_diff_ci",
    "newcombe_jeffreys_diff_ci",
    "newcombe_mid_p_diff_ci",
    "seeds_to_separate_means",
    "seeds_to_separate_rates",
    "t_mean_ci",
    "welch_diff_ci",
    "wilson_ci",
]

CONFIDENCE = 0.95
N_RESAMPLES = 9999


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate with its confidence interval.

    Attributes:
        estimate: The point estimate (NaN when there is no data).
        low: The lower bound, or None when the method cannot give one.
        high: The upper bound, or None when the method cannot give one.
        method: The method's name, e.g. `wilson`, `bootstrap-bca`, `welch-t`.
        n: How many values (or trials) it rests on; for a difference, the smaller group.
        note: Why the interval is missing or degenerate, as a plain sentence; empty when it is not.
    """

    estimate: float
    low: float | None
    high: float | None
    method: str
    n: int
    note: str = ""

    @property
    def has_bounds(self) -> bool:
        """Return True when both bounds are finite numbers."""
        return self.low is not None and self.high is not None and math.isfinite(self.low) and math.isfinite(self.high)

    def contains(self, value: float) -> bool:
        """Return True when `value` lies inside the interval; an interval without bounds contains everything."""
        if not self.has_bounds:
            return True
        return self.low <= value <= self.high  # type: ignore[operator]

    def overlaps(self, other: Interval) -> bool:
        """Return True when the two intervals share a value; one without bounds overlaps everything."""
        if not (self.has_bounds and other.has_bounds):
            return True
        return self.low <= other.high and other.low <= self.high  # type: ignore[operator]

    def to_dict(self) -> dict[str, object]:
        """Return the interval as JSON-friendly values (NaN becomes None)."""
        return {
            "estimate": _finite_or_none(self.estimate),
            "low": _finite_or_none(self.low),
            "high": _finite_or_none(self.high),
            "method": self.method,
            "n": self.n,
            "note": self.note,
        }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# --- means ---------------------------------------------------------------------------------------------------------


def _degenerate_mean(values: np.ndarray, method: str) -> Interval | None:
    """Return the interval of a sample too small or too flat for a method, or None when the method can run."""
    n = len(values)
    # No values: nothing to estimate.
    if n == 0:
        return Interval(math.nan, None, None, method, 0, "no values")
    mean = float(np.mean(values))
    # One value: a mean, but no spread to build an interval from.
    if n == 1:
        return Interval(mean, None, None, method, 1, "one value")
    # Identical values: every resample has the same mean, the interval would be a point.
    if np.ptp(values) == 0:
        return Interval(mean, None, None, method, n, f"all {n} values are identical")
    return None


def bootstrap_mean_ci(
    values: Sequence[float], confidence: float = CONFIDENCE, *, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> Interval:
    """Return the mean of `values` with a bootstrap interval (`scipy.stats.bootstrap`, BCa, else percentile).

    With 2 or 3 values the bootstrap distribution has few distinct means and the interval tends to be too narrow
    (it cannot be wider than the range of the values); the note says so.

    Args:
        values: The sample, e.g. the best score of each seed.
        confidence: The confidence level.
        n_resamples: Bootstrap resamples.
        seed: The random seed, so that a report is reproducible.
    """
    sample = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    degenerate = _degenerate_mean(sample, "bootstrap")
    if degenerate is not None:
        return degenerate
    mean = float(np.mean(sample))
    low, high, method = _bootstrap((sample,), _mean, confidence, n_resamples, seed)
    note = f"only {len(sample)} values: a bootstrap interval cannot be wider than their range" if len(sample) < 5 else ""
    return Interval(mean, low, high, method, len(sample), note)


def t_mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Return the mean of `values` with Student's t interval (`scipy.stats.t.interval`).

    Args:
        values: The sample.
        confidence: The confidence level.
    """
    sample = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    degenerate = _degenerate_mean(sample, "t")
    if degenerate is not None:
        return degenerate
    mean = float(np.mean(sample))
    low, high = stats.t.interval(confidence, len(sample) - 1, loc=mean, scale=stats.sem(sample))
    return Interval(mean, float(low), float(high), "t", len(sample))


def _mean(sample: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(sample, axis=axis)


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _bootstrap(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[float, float, str]:
    """Return (low, high, method) of a bootstrap interval: BCa, or percentile where BCa is undefined."""
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                samples,
                statistic,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=method,
                vectorized=True,
                random_state=np.random.default_rng(seed),
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        # BCa is NaN when the bootstrap distribution is degenerate on one side: fall back to percentile.
        if math.isfinite(low) and math.isfinite(high):
            return low, high, f"bootstrap-{method.lower()}"
    return math.nan, math.nan, "bootstrap"


# --- differences of means -------------------------------------------------------------------------------------------


def _degenerate_diff(a: np.ndarray, b: np.ndarray, method: str, min_n: int) -> Interval | None:
    """Return the interval of two samples too small or too flat for a method, or None when it can run."""
    n = min(len(a), len(b))
    # A group without values: no difference to estimate.
    if n == 0:
        return Interval(math.nan, None, None, method, 0, "a group has no values")
    diff = float(np.mean(a) - np.mean(b))
    # Too few values in a group for any spread.
    if n < min_n:
        return Interval(diff, None, None, method, n, f"a group has fewer than {min_n} values")
    # No spread in either group: the interval would be a point.
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return Interval(diff, None, None, method, n, "every value in each group is identical")
    return None


def welch_diff_ci(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Return mean(a) - mean(b) with Welch's t interval (unequal variances, `scipy.stats.ttest_ind`).

    Args:
        a: The first sample (e.g. a level's best scores).
        b: The second sample (e.g. the baseline's).
        confidence: The confidence level.
    """
    x = np.asarray([v for v in a if math.isfinite(v)], dtype=float)
    y = np.asarray([v for v in b if math.isfinite(v)], dtype=float)
    degenerate = _degenerate_diff(x, y, "welch-t", 2)
    if degenerate is not None:
        return degenerate
    result = stats.ttest_ind(x, y, equal_var=False)
    ci = result.confidence_interval(confidence)
    return Interval(float(np.mean(x) - np.mean(y)), float(ci.low), float(ci.high), "welch-t", min(len(x), len(y)))


def bootstrap_mean_diff_ci(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = CONFIDENCE,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Return mean(a) - mean(b) with a bootstrap interval, each group resampled on its own.

    Args:
        a: The first sample.
        b: The second sample.
        confidence: The confidence level.
        n_resamples: Bootstrap resamples.
        seed: The random seed.
    """
    x = np.asarray([v for v in a if math.isfinite(v)], dtype=float)
    y = np.asarray([v for v in b if math.isfinite(v)], dtype=float)
    degenerate = _degenerate_diff(x, y, "bootstrap", 2)
    if degenerate is not None:
        return degenerate
    low, high, method = _bootstrap((x, y), _mean_diff, confidence, n_resamples, seed)
    return Interval(float(np.mean(x) - np.mean(y)), low, high, method, min(len(x), len(y)))


# --- rates ----------------------------------------------------------------------------------------------------------


def wilson_ci(k: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Return the rate k/n with Wilson's score interval.

    Unlike a bootstrap (which gives [0, 0] for 0 of 3) or the Wald interval, Wilson's interval stays inside [0, 1]
    and is not a point at 0/n or n/n.

    Args:
        k: Events (e.g. collapsed runs).
        n: Trials.
        confidence: The confidence level.

    Raises:
        ValueError: If k is not between 0 and n.
    """
    if not 0 <= k <= n:
        raise ValueError(f"`k` must be between 0 and n={n} (got {k})")
    # No trials: no rate.
    if n == 0:
        return Interval(math.nan, None, None, "wilson", 0, "no runs")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0/n and n/n the bound is exactly 0 or 1 (the formula leaves a rounding error).
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Interval(p, low, high, "wilson", n)


def clopper_pearson_ci(k: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Return the rate k/n with the Clopper-Pearson ("exact") interval, from the beta quantiles of the binomial.

    It covers the true rate at least `confidence` of the time for every rate and every n, where Wilson's interval
    covers it only on average over rates: at 3 runs and a true rate of 5% or 95%, Wilson's misses it whenever 1 of
    3 (or 2 of 3) runs collapsed, because its bounds at 1/3 are [6%, 79%].

    Args:
        k: Events (e.g. collapsed runs).
        n: Trials.
        confidence: The confidence level.

    Raises:
        ValueError: If k is not between 0 and n.
    """
    if not 0 <= k <= n:
        raise ValueError(f"`k` must be between 0 and n={n} (got {k})")
    # No trials: no rate.
    if n == 0:
        return Interval(math.nan, None, None, "clopper-pearson", 0, "no runs")
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Interval(k / n, low, high, "clopper-pearson", n)


def jeffreys_ci(k: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Return the rate k/n with Jeffreys' interval: the equal-tailed Beta(k + 1/2, n - k + 1/2) quantiles.

    As usual the bound is exactly 0 at k = 0 and 1 at k = n (Brown, Cai and DasGupta 2001).

    Args:
        k: Events.
        n: Trials.
        confidence: The confidence level.

    Raises:
        ValueError: If k is not between 0 and n.
    """
    if not 0 <= k <= n:
        raise ValueError(f"`k` must be between 0 and n={n} (got {k})")
    # No trials: no rate.
    if n == 0:
        return Interval(math.nan, None, None, "jeffreys", 0, "no runs")
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k + 0.5, n - k + 0.5))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 0.5, n - k + 0.5))
    return Interval(k / n, low, high, "jeffreys", n)


def mid_p_ci(k: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Return the rate k/n with the mid-p interval: Clopper-Pearson with half the probability of k itself.

    The lower bound solves P(X > k) + P(X = k) / 2 = alpha / 2 and the upper bound P(X < k) + P(X = k) / 2 =
    alpha / 2, for X ~ Binomial(n, p) (0 at k = 0, 1 at k = n).

    Args:
        k: Events.
        n: Trials.
        confidence: The confidence level.

    Raises:
        ValueError: If k is not between 0 and n.
    """
    if not 0 <= k <= n:
        raise ValueError(f"`k` must be between 0 and n={n} (got {k})")
    # No trials: no rate.
    if n == 0:
        return Interval(math.nan, None, None, "mid-p", 0, "no runs")
    low, high = _mid_p_bounds(k, n, confidence)
    return Interval(k / n, low, high, "mid-p", n)


@functools.lru_cache(maxsize=4096)
def _mid_p_bounds(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Return the mid-p bounds (cached: each is a root search, and a report asks for the same few counts)."""
    from scipy.optimize import brentq

    tail = (1.0 - confidence) / 2

    def upper_tail(p: float) -> float:
        return float(stats.binom.sf(k, n, p) + stats.binom.pmf(k, n, p) / 2) - tail

    def lower_tail(p: float) -> float:
        return float(stats.binom.cdf(k - 1, n, p) + stats.binom.pmf(k, n, p) / 2) - tail

    low = 0.0 if k == 0 else float(brentq(upper_tail, 0.0, 1.0, xtol=1e-14))
    high = 1.0 if k == n else float(brentq(lower_tail, 0.0, 1.0, xtol=1e-14))
    return low, high


def newcombe_diff_ci(k1: int, n1: int, k2: int, n2: int, confidence: float = CONFIDENCE) -> Interval:
    """Return the difference of rates k1/n1 - k2/n2 with Newcombe's hybrid score interval (his method 10).

    The interval combines each rate's Wilson interval:
    `d - sqrt((p1 - l1)^2 + (u2 - p2)^2)` to `d + sqrt((u1 - p1)^2 + (p2 - l2)^2)`.

    Args:
        k1: Events in the first group.
        n1: Trials in the first group.
        k2: Events in the second group (e.g. the baseline).
        n2: Trials in the second group.
        confidence: The confidence level.
    """
    return _square_and_add(k1, n1, k2, n2, confidence, wilson_ci, "newcombe")


def newcombe_exact_diff_ci(k1: int, n1: int, k2: int, n2: int, confidence: float = CONFIDENCE) -> Interval:
    """Return k1/n1 - k2/n2 with Newcombe's square-and-add combination of the two Clopper-Pearson intervals.

    The same construction as `newcombe_diff_ci` (method 10), from exact limits instead of Wilson's: wider, and it
    keeps its coverage where a rate sits near 0 or 1 and a group has 3 runs, where the Wilson-based interval
    misses (at a true 95% against 0%, a baseline sample of 2 of 3 gives Newcombe's lower bound -94 points).

    Args:
        k1: Events in the first group.
        n1: Trials in the first group.
        k2: Events in the second group (e.g. the baseline).
        n2: Trials in the second group.
        confidence: The confidence level.
    """
    return _square_and_add(k1, n1, k2, n2, confidence, clopper_pearson_ci, "newcombe-exact")


def newcombe_jeffreys_diff_ci(k1: int, n1: int, k2: int, n2: int, confidence: float = CONFIDENCE) -> Interval:
    """Return k1/n1 - k2/n2 with Newcombe's square-and-add combination of the two Jeffreys intervals.

    Args:
        k1: Events in the first group.
        n1: Trials in the first group.
        k2: Events in the second group (e.g. the baseline).
        n2: Trials in the second group.
        confidence: The confidence level.
    """
    return _square_and_add(k1, n1, k2, n2, confidence, jeffreys_ci, "newcombe-jeffreys")


def newcombe_mid_p_diff_ci(k1: int, n1: int, k2: int, n2: int, confidence: float = CONFIDENCE) -> Interval:
    """Return k1/n1 - k2/n2 with Newcombe's square-and-add combination of the two mid-p intervals.

    Args:
        k1: Events in the first group.
        n1: Trials in the first group.
        k2: Events in the second group (e.g. the baseline).
        n2: Trials in the second group.
        confidence: The confidence level.
    """
    return _square_and_add(k1, n1, k2, n2, confidence, mid_p_ci, "newcombe-mid-p")


def _square_and_add(
    k1: int,
    n1: int,
    k2: int,
    n2: int,
    confidence: float,
    rate: Callable[[int, int, float], Interval],
    method: str,
) -> Interval:
    """Return k1/n1 - k2/n2 with the interval built from each rate's interval (Newcombe's square-and-add)."""
    # A group without runs: no difference.
    if n1 == 0 or n2 == 0:
        return Interval(math.nan, None, None, method, min(n1, n2), "a group has no runs")
    first, second = rate(k1, n1, confidence), rate(k2, n2, confidence)
    p1, p2 = first.estimate, second.estimate
    l1, u1, l2, u2 = first.low, first.high, second.low, second.high
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)  # type: ignore[operator]
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)  # type: ignore[operator]
    return Interval(diff, low, high, method, min(n1, n2))


# --- seeds needed ---------------------------------------------------------------------------------------------------

POWER = 0.8
MAX_SEEDS = 1000


def seeds_to_separate_means(
    difference: float, sd: float, *, power: float = POWER, confidence: float = CONFIDENCE, max_seeds: int = MAX_SEEDS
) -> int | None:
    """Return the seeds per level at which a two-sided two-sample t test detects `difference` with `power`.

    The exact power of the equal-n t test (noncentral t, df = 2n - 2, noncentrality = difference / sd * sqrt(n/2)),
    searched from n = 2 upward: at a standardised difference of 0.5, 0.8 and 1.0 it gives 64, 26 and 17 seeds per
    level (Cohen's tables).

    Args:
        difference: The difference of means to detect (e.g. the observed one).
        sd: The common standard deviation of one run's value (e.g. the pooled observed one).
        power: The chance of detecting it.
        confidence: 1 - the test's level.
        max_seeds: The largest answer searched.

    Returns:
        The seeds per level, or None when there is nothing to detect (no difference, no spread) or more than
        `max_seeds` would be needed.
    """
    # No difference, or no spread to scale it by: no sample size follows from them.
    if not (math.isfinite(difference) and math.isfinite(sd)) or difference == 0 or sd <= 0:
        return None
    effect = abs(difference) / sd
    for n in range(2, max_seeds + 1):
        df = 2 * n - 2
        critical = float(stats.t.ppf(1 - (1 - confidence) / 2, df))
        noncentrality = effect * math.sqrt(n / 2)
        achieved = float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))
        if achieved >= power:
            return n
    return None


def seeds_to_separate_rates(
    p1: float, p2: float, *, power: float = POWER, confidence: float = CONFIDENCE, max_seeds: int = MAX_SEEDS
) -> int | None:
    """Return the seeds per level at which a two-sided test of two rates detects p1 vs p2 with `power`.

    Fleiss' formula with the continuity correction of Fleiss, Tytun and Ury (1980), which tracks exact tests at the
    few runs a sweep has (without it, 0% vs 100% would need 2 runs, which no 95% interval can separate):
    `n0 = (z_(1-a/2) sqrt(2 pbar (1 - pbar)) + z_power sqrt(p1 (1 - p1) + p2 (1 - p2)))^2 / (p1 - p2)^2`, then
    `n = n0 / 4 * (1 + sqrt(1 + 4 / (n0 |p1 - p2|)))^2`, rounded up (0.5 vs 0.25: 66 per group; 0 vs 1: 4).

    Args:
        p1: One level's rate (e.g. the observed one).
        p2: The other's.
        power: The chance of detecting the difference.
        confidence: 1 - the test's level.
        max_seeds: The largest answer given.

    Returns:
        The seeds per level, or None when the rates are equal or more than `max_seeds` are needed.
    """
    # Equal rates: nothing to detect.
    if not (math.isfinite(p1) and math.isfinite(p2)) or p1 == p2:
        return None
    z_alpha = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    z_power = float(stats.norm.ppf(power))
    pbar = (p1 + p2) / 2
    delta = abs(p1 - p2)
    root = z_alpha * math.sqrt(2 * pbar * (1 - pbar)) + z_power * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    n0 = root**2 / delta**2
    n = math.ceil(n0 / 4 * (1 + math.sqrt(1 + 4 / (n0 * delta))) ** 2 - 1e-9)
    return n if n <= max_seeds else None


# --- survival -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Survival:
    """A Kaplan-Meier estimate of "steps until collapse".

    Attributes:
        steps: The steps at which the curve is given (0 first).
        survival: The fraction of runs not yet collapsed at each step.
        median_steps: The step by which half the runs have collapsed; None when the curve never falls to 0.5.
        n: How many runs it rests on.
        n_events: How many of them collapsed.
        low: The pointwise 95% lower bound at each step (lifelines' exponential Greenwood interval); empty when
            there are no runs.
        high: The pointwise 95% upper bound at each step.
    """

    steps: tuple[float, ...]
    survival: tuple[float, ...]
    median_steps: float | None
    n: int
    n_events: int
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()


def kaplan_meier(times: Sequence[float], events: Sequence[bool]) -> Survival:
    """Return the Kaplan-Meier curve of steps until collapse (`lifelines.KaplanMeierFitter`).

    Args:
        times: Each run's event step (its collapse onset) or censoring step.
        events: True where the run collapsed, False where it was censored.
    """
    from lifelines import KaplanMeierFitter

    # No runs: a flat curve.
    if not times:
        return Survival((0.0,), (1.0,), None, 0, 0)
    fitter = KaplanMeierFitter().fit(list(times), event_observed=list(events))
    curve = fitter.survival_function_.iloc[:, 0]
    band = fitter.confidence_interval_survival_function_
    median = float(fitter.median_survival_time_)
    return Survival(
        steps=tuple(float(step) for step in curve.index),
        survival=tuple(float(value) for value in curve.to_numpy()),
        median_steps=median if math.isfinite(median) else None,
        n=len(times),
        n_events=int(sum(bool(e) for e in events)),
        low=tuple(float(value) for value in band.iloc[:, 0].to_numpy()),
        high=tuple(float(value) for value in band.iloc[:, 1].to_numpy()),
    )


@dataclass(frozen=True, slots=True)
class LogRank:
    """The log-rank test of equal survival across groups.

    Attributes:
        statistic: The chi-squared statistic (None when the test cannot run).
        p_value: Its p-value (None when the test cannot run).
        n_groups: How many groups were compared.
        note: Why the test did not run; empty when it did.
    """

    statistic: float | None
    p_value: float | None
    n_groups: int
    note: str = ""


def logrank(groups: Sequence[tuple[Sequence[float], Sequence[bool]]]) -> LogRank:
    """Return the log-rank test across groups: `logrank_test` for two, `multivariate_logrank_test` for more.

    Args:
        groups: Each group's (times, events), as for `kaplan_meier`.
    """
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    groups = [(list(t), list(e)) for t, e in groups if len(t)]
    # Fewer than two groups with runs: nothing to compare.
    if len(groups) < 2:
        return LogRank(None, None, len(groups), "fewer than two groups")
    # No collapse anywhere: every curve stays at 1, the test has nothing to weigh.
    if not any(any(e) for _, e in groups):
        return LogRank(None, None, len(groups), "no run collapsed")
    if len(groups) == 2:
        (t1, e1), (t2, e2) = groups
        result = logrank_test(t1, t2, event_observed_A=e1, event_observed_B=e2)
    else:
        times = [t for ts, _ in groups for t in ts]
        events = [e for _, es in groups for e in es]
        labels = [i for i, (ts, _) in enumerate(groups) for _ in ts]
        result = multivariate_logrank_test(times, labels, events)
    return LogRank(float(result.test_statistic), float(result.p_value), len(groups))


# --- the swappable set ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntervalMethods:
    """The interval methods a report uses, one per kind, so that a study can swap any of them.

    Attributes:
        mean: values -> the mean with its interval.
        rate: (k, n) -> the rate with its interval.
        mean_diff: (a, b) -> mean(a) - mean(b) with its interval.
        rate_diff: (k1, n1, k2, n2) -> k1/n1 - k2/n2 with its interval.
    """

    mean: Callable[[Sequence[float]], Interval] = t_mean_ci
    rate: Callable[[int, int], Interval] = mid_p_ci
    mean_diff: Callable[[Sequence[float], Sequence[float]], Interval] = welch_diff_ci
    rate_diff: Callable[[int, int, int, int], Interval] = newcombe_mid_p_diff_ci


DEFAULT_METHODS = IntervalMethods()
"""Student's t for a mean, mid-p for a rate, Welch's t for a difference of means, Newcombe's square-and-add of the
two mid-p intervals for a difference of rates. The coverage study (benchmarks/validity.py, truth and subsets from
disjoint seeds) measures them against the alternatives: the bootstrap covers far less than 90% at 3 seeds; t and
Welch's t reach about 0.93 and 0.96 pooled but fall short for their worst level; mid-p and its Newcombe difference
meet the target on the held-out seeds, where the narrower Wilson-based difference does not for one level
(benchmarks/results/validity.md)."""
