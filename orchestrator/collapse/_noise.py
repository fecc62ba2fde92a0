"""How noisy one evaluation is, so that a score rule calls a drop a drop only when it is beyond the noise.

Two estimates, in this order:

- **Binomial**, when the evaluation set's size n is known (`orchestrator.evalsets.eval_set`: the spec or the
  values' granularity) and the scores are accuracies in [0, 1]. The drop from the best evaluation to this one is
  compared with the standard error of a difference of two proportions under no change, `sqrt(2 p (1 - p) / n)`
  with `p` their mean (kept at least 1/(2n) from 0 and 1). For `mean@K` metrics n counts problems, not samples:
  K samples of one problem are not independent, so this is an upper bound of the noise.
- **Spread**, otherwise: the run's own evaluation-to-evaluation spread while healthy (the earlier evaluations not
  judged dropped): the standard deviation of successive differences (so that a slow trend does not inflate it)
  without the one farthest from their median (so that one jump does not), at its 90% upper confidence bound (a
  handful of evaluations often shows too small a spread), once there are at least 5 of them.
- **Unknown** before that. A drop then counts only when it is severe: at least `unknown_drop` (half) of the
  gain, as well as the rule's own threshold. Judged by the threshold alone, a healthy run evaluated on about 30
  problems whose values do not show the set's size was stopped in about a third of simulated runs, in its first
  evaluations (benchmarks/results/calibration.md).

A size taken from `KNOWN_EVAL_SIZES` (the spec did not give one and the values do not show it) may be wrong: teams
often evaluate on a subset. It is used as a floor: the larger of its binomial noise and the run's spread.

A drop's size in noise units is `z = (best - value) / sigma_diff` (for `mode="min"`, `value - best`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from scipy.stats import chi2

from orchestrator.evalsets import EvalSet, eval_set

__all__ = ["DEFAULT_NOISE_Z", "DEFAULT_UNKNOWN_DROP", "EvalNoise", "Noise"]

DEFAULT_UNKNOWN_DROP = 0.5
"""While the noise is unknown, a drop counts only when it lost at least this fraction of the gain."""

DEFAULT_NOISE_Z = 3.5
"""A drop must be at least this many standard errors of the difference. The best evaluation is the maximum of
noisy evaluations, so it sits above the run's true level: 3.5, with two dropped evaluations in a row, keeps false
stops of healthy runs on 30 problems under 1% (benchmarks/results/noise.md)."""

_MIN_SPREAD_EVALS = 5
"""Evaluations needed before the run's own spread is trusted as its noise."""

_SPREAD_UPPER_TAIL = 0.10
"""The run's spread is taken at its 90% upper confidence bound (chosen on simulated healthy runs: see
benchmarks/results/calibration.md, "The run's own spread")."""


@dataclass(frozen=True, slots=True)
class Noise:
    """The noise of one evaluation, as known when it was made.

    Attributes:
        kind: `binomial` or `spread`.
        size: The evaluation set's size (binomial).
        origin: Where the size came from: `spec`, `inferred` or `known` (binomial).
        sigma: One evaluation's standard deviation (spread).
    """

    kind: str
    size: int | None = None
    origin: str | None = None
    sigma: float | None = None

    def diff_sigma(self, best: float, value: float) -> float:
        """Return the standard error of `best - value` if nothing had changed."""
        if self.kind == "binomial" and self.size is not None:
            n = self.size
            p = min(max((best + value) / 2.0, 0.5 / n), 1.0 - 0.5 / n)
            return math.sqrt(2.0 * p * (1.0 - p) / n)
        return math.sqrt(2.0) * (self.sigma or 0.0)

    def describe(self) -> str:
        """Return e.g. `binomial, 30 problems (spec)` or `spread 0.012`."""
        if self.kind == "binomial":
            return f"binomial on {self.size} problems ({self.origin})"
        return f"run's own spread {self.sigma:.3g}"


@dataclass(frozen=True, slots=True)
class EvalNoise:
    """The noise model of one objective: what `judge_evals` asks for each evaluation.

    Args:
        metric: The objective.
        sizes: The spec's `objective.eval_sizes` (data source -> problems).
        z: How many standard errors a drop must exceed; 0 turns the noise check off.
        unknown_drop: While the noise is unknown, the fraction of the gain a drop must lose to count.
    """

    metric: str
    sizes: Mapping[str, int] | None = None
    z: float = DEFAULT_NOISE_Z
    unknown_drop: float = DEFAULT_UNKNOWN_DROP

    def at(self, prior: Sequence[float], value: float, best: float, *, seen: Sequence[float] | None = None) -> Noise | None:
        """Return the noise of an evaluation `value` judged against `best`, after the `prior` healthy evaluations.

        Pure: the same evaluations give the same answer, so a rule stays a function of the history.

        Args:
            prior: The healthy evaluations before this one (the run's own spread is measured on them).
            value: The evaluation judged (or a mean of several, see `seen`).
            best: What it is judged against.
            seen: The evaluations the set's size may be inferred from, when `value` and `best` are not single
                evaluations (means of several are not multiples of 1/n); by default `prior` and `value`.
        """
        values = tuple(seen) if seen is not None else (*prior, value)
        found = _eval_set(self.metric, tuple(sorted(self.sizes.items())) if self.sizes else (), values)
        sigma = _spread(tuple(prior))
        spread = None if sigma is None else Noise("spread", sigma=sigma)
        if found is None or found.size is None or not all(0.0 <= v <= 1.0 for v in (*values, best)):
            return spread
        binomial = Noise("binomial", size=found.size, origin=found.origin)
        if found.origin != "known" or spread is None:
            return binomial
        # A common benchmark's size is a floor on the noise, not a ceiling: a team may evaluate on a subset.
        return binomial if binomial.diff_sigma(best, value) >= spread.diff_sigma(best, value) else spread


@lru_cache(maxsize=8192)
def _eval_set(metric: str, sizes: tuple[tuple[str, int], ...], values: tuple[float, ...]) -> EvalSet | None:
    return eval_set(metric, dict(sizes), values)


@lru_cache(maxsize=8192)
def _spread(prior: tuple[float, ...]) -> float | None:
    """One evaluation's standard deviation from successive differences, an upper bound, or None with too few.

    The successive differences remove a slow trend; the one farthest from their median is left out, so that one
    jump (the rise after the evaluation before training, say) does not inflate the estimate. From a handful of
    evaluations the estimate is often far too small, and a drop then looks far beyond the noise, so it is raised
    to its 90% upper confidence bound, `s sqrt(nu / chi2_0.10(nu))` with `nu` its degrees of freedom.
    """
    if len(prior) < _MIN_SPREAD_EVALS:
        return None
    diffs = [b - a for a, b in zip(prior, prior[1:])]
    centre = statistics.median(diffs)
    kept = sorted(diffs, key=lambda d: abs(d - centre))[:-1]
    # A difference of two evaluations has sqrt(2) times one evaluation's deviation.
    sigma = statistics.stdev(kept) / math.sqrt(2.0)
    dof = len(kept) - 1
    return sigma * math.sqrt(dof / float(chi2.ppf(_SPREAD_UPPER_TAIL, dof)))
