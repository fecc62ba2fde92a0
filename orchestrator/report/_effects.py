"""Per-factor effects across seeds: each level's best score and collapse rate with intervals, survival, the
difference from the baseline level, a grid's interaction tables, the best configuration, and plain warnings where
the data cannot tell two levels apart.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from orchestrator.collapse import Mode
from orchestrator.report._stats import (
    DEFAULT_METHODS,
    MAX_SEEDS,
    POWER,
    Interval,
    IntervalMethods,
    LogRank,
    Survival,
    kaplan_meier,
    logrank,
    seeds_to_separate_means,
    seeds_to_separate_rates,
)
from orchestrator.report._summary import RunSummary

__all__ = [
    "Comparison",
    "Design",
    "Effects",
    "FactorEffects",
    "GroupStats",
    "InteractionTable",
    "compute_effects",
    "level_order",
    "rate_diff_with_asha_bounds",
    "rate_with_asha_bounds",
]

Design = Literal["none", "single", "one_at_a_time", "grid", "other"]
"""How the runs' factor levels are laid out: no factors, one factor, around a baseline, a full grid, or other."""


@dataclass(frozen=True)
class GroupStats:
    """A group of runs (one level of a factor, one configuration, one grid cell), summarised across seeds.

    Attributes:
        levels: Factor -> level shared by the group.
        runs: The runs' names.
        best_score: The mean best score with its interval.
        collapse_rate: Collapsed / (collapsed + ran to their end without collapsing), with its interval. Runs
            ASHA stopped before they collapsed are left out of the estimate: they neither collapsed nor survived to
            the end. They widen the interval instead (`rate_with_asha_bounds`).
        n_collapsed: How many runs collapsed.
        n_asha: How many runs ASHA stopped before they collapsed.
        survival: Kaplan-Meier of steps until collapse (ASHA stops censored at their step).
    """

    levels: Mapping[str, str]
    runs: tuple[str, ...]
    best_score: Interval
    collapse_rate: Interval
    n_collapsed: int
    n_asha: int
    survival: Survival

    @property
    def n_runs(self) -> int:
        """Return how many runs the group holds."""
        return len(self.runs)

    @property
    def n_rate(self) -> int:
        """Return how many runs the collapse rate rests on."""
        return self.n_runs - self.n_asha

    @property
    def label(self) -> str:
        """Return e.g. `kl=0.01, lr=cos`."""
        return ", ".join(f"{factor}={level}" for factor, level in self.levels.items()) or "all runs"


@dataclass(frozen=True)
class Comparison:
    """A level against the factor's baseline level.

    Attributes:
        factor: The factor.
        level: The level compared.
        baseline: The baseline level.
        best_score_diff: mean best score of the level minus the baseline's, with its interval.
        collapse_rate_diff: collapse rate of the level minus the baseline's, with its interval.
        best_score_sd: The pooled standard deviation of the two levels' best scores (None with fewer than 2 each).
        best_score_seeds: Seeds per level at which the observed best-score difference and spread would be
            detected (80% power, two-sided 5% t test); None when no number can be planned from them.
        collapse_rate_seeds: The same for the observed collapse rates (Fleiss' formula).
    """

    factor: str
    level: str
    baseline: str
    best_score_diff: Interval
    collapse_rate_diff: Interval
    best_score_sd: float | None = None
    best_score_seeds: int | None = None
    collapse_rate_seeds: int | None = None


@dataclass(frozen=True)
class FactorEffects:
    """One factor: its levels, each against the baseline level, and the log-rank test across levels.

    Attributes:
        factor: The factor.
        baseline: The level the others are compared with.
        levels: Each level's group, in level order.
        comparisons: Each non-baseline level against the baseline.
        logrank: The log-rank test of equal survival across the levels.
        scope: Which runs it rests on, as a phrase.
    """

    factor: str
    baseline: str
    levels: tuple[GroupStats, ...]
    comparisons: tuple[Comparison, ...]
    logrank: LogRank
    scope: str


@dataclass(frozen=True)
class InteractionTable:
    """A grid's two-way table: each cell (a level of each factor) over the other factors and seeds.

    Attributes:
        factors: The two factors (rows, columns).
        rows: The first factor's levels.
        columns: The second factor's levels.
        cells: (row level, column level) -> the cell's group.
    """

    factors: tuple[str, str]
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: Mapping[tuple[str, str], GroupStats]


@dataclass(frozen=True)
class Effects:
    """Everything the report says about the factors.

    Attributes:
        design: How the levels are laid out.
        factors: The factors, in the order they were first seen.
        baseline: Factor -> baseline level.
        by_factor: Each factor's effects.
        configurations: Each distinct configuration (combination of levels) across its seeds.
        interactions: A grid's two-way tables, one per pair of factors.
        best: The best configuration: the lowest collapse rate, then the best mean best score.
        warnings: Plain sentences where the data cannot tell two levels apart.
        mode: `max` or `min`, for the best score.
    """

    design: Design
    factors: tuple[str, ...]
    baseline: Mapping[str, str]
    by_factor: tuple[FactorEffects, ...]
    configurations: tuple[GroupStats, ...]
    interactions: tuple[InteractionTable, ...]
    best: GroupStats | None
    warnings: tuple[str, ...]
    mode: Mode


def level_order(levels: Sequence[str]) -> list[str]:
    """Return distinct levels sorted numerically when all are numbers, else as text (`0` < `0.01` < `0.1`)."""
    distinct = list(dict.fromkeys(levels))
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


def compute_effects(
    summaries: Sequence[RunSummary],
    mode: Mode = "max",
    *,
    baseline: Mapping[str, str] | None = None,
    methods: IntervalMethods = DEFAULT_METHODS,
) -> Effects:
    """Return the per-factor effects of the runs that have factor levels.

    Args:
        summaries: The runs; those without levels are left out.
        mode: `max` if a higher score is better, else `min`.
        baseline: Factor -> baseline level; by default the centre of a one-at-a-time design, else each factor's
            first level in `level_order`.
        methods: The interval methods.
    """
    factors = _factors(summaries)
    runs = [s for s in summaries if factors and all(f in s.levels for f in factors)]
    levels = {f: level_order([s.levels[f] for s in runs]) for f in factors}
    points = {tuple(s.levels[f] for f in factors) for s in runs}
    design, centre = _design(factors, levels, points)
    base = {f: levels[f][0] for f in factors}
    if centre is not None:
        base.update(dict(zip(factors, centre)))
    base.update(baseline or {})
    by_factor = tuple(_factor_effects(f, factors, levels[f], base, runs, design, methods) for f in factors)
    configurations = tuple(
        _group(runs, dict(zip(factors, point)), methods) for point in sorted(points, key=lambda p: _point_key(p, factors, levels))
    )
    interactions = _interactions(factors, levels, runs, methods) if design == "grid" else ()
    return Effects(
        design=design,
        factors=tuple(factors),
        baseline=base,
        by_factor=by_factor,
        configurations=configurations,
        interactions=interactions,
        best=_best(configurations, mode),
        warnings=tuple(w for effect in by_factor for w in _warnings(effect)),
        mode=mode,
    )


def _factors(summaries: Sequence[RunSummary]) -> list[str]:
    return list(dict.fromkeys(f for s in summaries for f in s.levels))


def _point_key(point: tuple[str, ...], factors: Sequence[str], levels: Mapping[str, list[str]]) -> tuple[int, ...]:
    return tuple(levels[f].index(level) for f, level in zip(factors, point))


def _design(
    factors: Sequence[str], levels: Mapping[str, list[str]], points: set[tuple[str, ...]]
) -> tuple[Design, tuple[str, ...] | None]:
    """Return the design and, for one-at-a-time, its centre point."""
    # No factors: nothing to compare.
    if not factors or not points:
        return "none", None
    # One factor: its levels are the comparison.
    if len(factors) == 1:
        return "single", None
    # Every combination present: a full grid.
    if len(points) == math.prod(len(levels[f]) for f in factors):
        return "grid", None
    # A centre from which every other point changes one factor: one at a time.
    for centre in sorted(points, key=lambda p: _point_key(p, factors, levels)):
        if all(sum(a != b for a, b in zip(centre, p)) <= 1 for p in points):
            return "one_at_a_time", centre
    return "other", None


def _group(runs: Sequence[RunSummary], levels: Mapping[str, str], methods: IntervalMethods) -> GroupStats:
    """Return the stats of the runs whose levels include `levels`."""
    members = [s for s in runs if all(s.levels.get(f) == level for f, level in levels.items())]
    scores = [s.best_score for s in members if s.best_score is not None]
    n_collapsed = sum(s.collapsed for s in members)
    n_asha = sum(s.censored_by_asha for s in members)
    times = [t for t in (s.survival_time for s in members) if t is not None]
    return GroupStats(
        levels=dict(levels),
        runs=tuple(s.run for s in members),
        best_score=methods.mean(scores),
        collapse_rate=rate_with_asha_bounds(methods, n_collapsed, len(members), n_asha),
        n_collapsed=n_collapsed,
        n_asha=n_asha,
        survival=kaplan_meier([t for t, _ in times], [e for _, e in times]),
    )


def _factor_effects(
    factor: str,
    factors: Sequence[str],
    levels: Sequence[str],
    base: Mapping[str, str],
    runs: Sequence[RunSummary],
    design: Design,
    methods: IntervalMethods,
) -> FactorEffects:
    """Return one factor's effects: at the baseline of the others (one at a time), else over all runs."""
    others = {f: base[f] for f in factors if f != factor}
    if design == "one_at_a_time":
        scoped = [s for s in runs if all(s.levels[f] == level for f, level in others.items())]
        scope = "runs at the baseline of the other factors" if others else "all runs"
    else:
        scoped = list(runs)
        scope = "all runs (averaged over the other factors)" if others else "all runs"
    groups = tuple(_group(scoped, {factor: level}, methods) for level in levels)
    reference = next(g for g in groups if g.levels[factor] == base[factor])
    comparisons = tuple(_compare(factor, g, reference, scoped, methods) for g in groups if g is not reference)
    survival_groups = [_times_events(scoped, factor, g.levels[factor]) for g in groups]
    return FactorEffects(factor, base[factor], groups, comparisons, logrank(survival_groups), scope)


def _times_events(runs: Sequence[RunSummary], factor: str, level: str) -> tuple[list[float], list[bool]]:
    times = [t for t in (s.survival_time for s in runs if s.levels[factor] == level) if t is not None]
    return [float(t) for t, _ in times], [e for _, e in times]


def _compare(
    factor: str, group: GroupStats, reference: GroupStats, runs: Sequence[RunSummary], methods: IntervalMethods
) -> Comparison:
    def scores(g: GroupStats) -> list[float]:
        names = set(g.runs)
        return [s.best_score for s in runs if s.run in names and s.best_score is not None]

    a, b = scores(group), scores(reference)
    best_score_diff = methods.mean_diff(a, b)
    sd = _pooled_sd(a, b)
    rate, base_rate = group.collapse_rate.estimate, reference.collapse_rate.estimate
    return Comparison(
        factor=factor,
        level=group.levels[factor],
        baseline=reference.levels[factor],
        best_score_diff=best_score_diff,
        collapse_rate_diff=rate_diff_with_asha_bounds(methods, group, reference),
        best_score_sd=sd,
        best_score_seeds=None if sd is None else seeds_to_separate_means(best_score_diff.estimate, sd),
        collapse_rate_seeds=seeds_to_separate_rates(rate, base_rate),
    )


def rate_with_asha_bounds(methods: IntervalMethods, n_collapsed: int, n_runs: int, n_asha: int) -> Interval:
    """Return the collapse rate of a group with its interval, widened for runs ASHA stopped before they collapsed.

    The estimate leaves the stopped runs out (collapsed / runs that collapsed or ran to their end). ASHA does not
    stop runs at random (with `signal: best` it keeps early peakers, which are the runs that collapse), so neither
    leaving them out nor counting them as survivors is unbiased. The interval therefore spans both extremes: from
    the lower bound with every stopped run counted as survived to the upper bound with every one counted as
    collapsed, which covers the true rate whatever the stopped runs would have done.

    Args:
        methods: The interval methods (`methods.rate` gives each bound).
        n_collapsed: Runs that collapsed.
        n_runs: All runs of the group.
        n_asha: Runs ASHA stopped before they collapsed.
    """
    inner = methods.rate(n_collapsed, n_runs - n_asha)
    # No ASHA stop: the ordinary interval.
    if n_asha == 0:
        return inner
    low = methods.rate(n_collapsed, n_runs).low
    high = methods.rate(n_collapsed + n_asha, n_runs).high
    note = (
        f"{n_asha} of {n_runs} runs were stopped by ASHA before collapsing: the interval runs from counting them "
        "as survived to counting them as collapsed"
    )
    return Interval(inner.estimate, low, high, f"{inner.method}, ASHA bounds", n_runs - n_asha, note)


def rate_diff_with_asha_bounds(methods: IntervalMethods, group: GroupStats, reference: GroupStats) -> Interval:
    """Return group's collapse rate minus reference's, with the interval widened for ASHA stops in either.

    The estimate leaves the stopped runs out; the lower bound counts the group's stopped runs as survived and the
    reference's as collapsed, the upper bound the other way round (see `rate_with_asha_bounds`).
    """
    inner = methods.rate_diff(group.n_collapsed, group.n_rate, reference.n_collapsed, reference.n_rate)
    # No ASHA stop on either side: the ordinary interval.
    if group.n_asha == 0 and reference.n_asha == 0:
        return inner
    k, n, a = group.n_collapsed, group.n_runs, group.n_asha
    k_ref, n_ref, a_ref = reference.n_collapsed, reference.n_runs, reference.n_asha
    low = methods.rate_diff(k, n, k_ref + a_ref, n_ref).low
    high = methods.rate_diff(k + a, n, k_ref, n_ref).high
    note = (
        f"{group.n_asha + reference.n_asha} runs were stopped by ASHA before collapsing: the interval spans every way "
        "they could have ended"
    )
    return Interval(inner.estimate, low, high, f"{inner.method}, ASHA bounds", min(group.n_rate, reference.n_rate), note)


def _pooled_sd(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Return sqrt((var(a) + var(b)) / 2), the spread a power calculation with equal seeds per level assumes."""
    finite_a, finite_b = [v for v in a if math.isfinite(v)], [v for v in b if math.isfinite(v)]
    # Fewer than 2 values in a level: no spread to measure.
    if len(finite_a) < 2 or len(finite_b) < 2:
        return None
    return math.sqrt((statistics.variance(finite_a) + statistics.variance(finite_b)) / 2)


def _interactions(
    factors: Sequence[str], levels: Mapping[str, list[str]], runs: Sequence[RunSummary], methods: IntervalMethods
) -> tuple[InteractionTable, ...]:
    tables = []
    for a, b in itertools.combinations(factors, 2):
        cells = {(x, y): _group(runs, {a: x, b: y}, methods) for x in levels[a] for y in levels[b]}
        tables.append(InteractionTable((a, b), tuple(levels[a]), tuple(levels[b]), cells))
    return tuple(tables)


def _best(configurations: Sequence[GroupStats], mode: Mode) -> GroupStats | None:
    """Return the configuration with the lowest collapse rate, then the best mean best score."""
    scored = [g for g in configurations if math.isfinite(g.best_score.estimate)]
    # No configuration has a score: no best.
    if not scored:
        return None
    sign = -1.0 if mode == "max" else 1.0

    def key(g: GroupStats) -> tuple[float, float]:
        rate = g.collapse_rate.estimate
        return (rate if math.isfinite(rate) else 1.0, sign * g.best_score.estimate)

    return min(scored, key=key)


def _warnings(effect: FactorEffects) -> list[str]:
    """Return a sentence for each level the data cannot tell apart from the baseline, and for each ASHA-censored one."""
    groups = {g.levels[effect.factor]: g for g in effect.levels}
    found: list[str] = [
        f"`{effect.factor}`={level}: {g.n_asha} of {g.n_runs} runs were stopped by ASHA before collapsing. Its "
        f"collapse-rate interval {_interval_phrase(g.collapse_rate, 100.0)} spans every way they could have ended; "
        "its survival curve and median steps to collapse assume the stops were unrelated to collapse, which ASHA "
        "does not guarantee (it keeps the runs that peak early)."
        for level, g in groups.items()
        if g.n_asha
    ]
    for comparison in effect.comparisons:
        group, reference = groups[comparison.level], groups[comparison.baseline]
        pair = f"`{effect.factor}`={comparison.level} and the baseline `{effect.factor}`={comparison.baseline}"
        counts = f"{group.n_runs} vs {reference.n_runs} runs"
        if comparison.best_score_diff.contains(0.0):
            found.append(
                f"{pair} cannot be told apart on the best score: "
                f"{_overlap_phrase(group.best_score, reference.best_score)}, and the difference's interval "
                f"{_interval_phrase(comparison.best_score_diff)} includes 0 ({counts}). "
                + _best_score_seeds_sentence(comparison)
            )
        # Neither level collapsed at all: the rates (0/n) say so; there is no difference to doubt.
        if group.n_collapsed == 0 and reference.n_collapsed == 0:
            continue
        if comparison.collapse_rate_diff.contains(0.0):
            found.append(
                f"{pair} cannot be told apart on the collapse rate: "
                f"{_overlap_phrase(group.collapse_rate, reference.collapse_rate, 100.0)}, and the difference's "
                f"interval {_interval_phrase(comparison.collapse_rate_diff, 100.0)} includes 0 ({counts}). "
                + _collapse_rate_seeds_sentence(comparison, group, reference)
            )
    return found


_POWER_PHRASE = f"{POWER:.0%} power, two-sided 5% test"


def _best_score_seeds_sentence(comparison: Comparison) -> str:
    """Return the seeds advice for a best-score difference the data cannot resolve, as one sentence."""
    diff, sd, n = comparison.best_score_diff.estimate, comparison.best_score_sd, comparison.best_score_seeds
    # No spread measured (one run, identical values) or no difference: nothing to plan from.
    if sd is None or sd == 0 or not math.isfinite(diff) or diff == 0:
        return "Seeds: these runs show no difference and spread to plan a number of seeds from."
    seen = f"the difference ({diff:+.3g}) and spread (sd {sd:.3g}) seen here"
    if n is None:
        return f"Seeds: more than {MAX_SEEDS} per level would be needed to tell them apart at {seen} ({_POWER_PHRASE})."
    return f"Seeds: about {n} per level would tell them apart if {seen} hold ({_POWER_PHRASE})."


def _collapse_rate_seeds_sentence(comparison: Comparison, group: GroupStats, reference: GroupStats) -> str:
    """Return the seeds advice for a collapse-rate difference the data cannot resolve, as one sentence."""
    rate, base_rate, n = group.collapse_rate.estimate, reference.collapse_rate.estimate, comparison.collapse_rate_seeds
    # A rate without runs (every run stopped by ASHA): nothing to plan from.
    if not (math.isfinite(rate) and math.isfinite(base_rate)):
        return "Seeds: a level has no run that collapsed or ran to its end, so no number of seeds can be planned."
    # Equal rates: no difference to plan for.
    if rate == base_rate:
        return "Seeds: the collapse rates seen here are equal, so no number of seeds can be planned from them."
    seen = f"the rates seen here ({rate:.0%} vs {base_rate:.0%})"
    if n is None:
        return f"Seeds: more than {MAX_SEEDS} per level would be needed to tell them apart at {seen} ({_POWER_PHRASE})."
    return f"Seeds: about {n} per level would tell them apart if {seen} hold ({_POWER_PHRASE})."


def _overlap_phrase(a: Interval, b: Interval, scale: float = 1.0) -> str:
    if not (a.has_bounds and b.has_bounds):
        return "a level has no interval"
    verb = "overlap" if a.overlaps(b) else "do not overlap"
    return f"their 95% intervals {_interval_phrase(a, scale)} and {_interval_phrase(b, scale)} {verb}"


def _interval_phrase(interval: Interval, scale: float = 1.0) -> str:
    """Return `[low, high]`, in percent when `scale` is 100."""
    if not interval.has_bounds:
        return f"(none: {interval.note})"
    if scale == 100.0:
        return f"[{interval.low * scale:.0f}%, {interval.high * scale:.0f}%]"
    return f"[{interval.low:.3g}, {interval.high:.3g}]"
