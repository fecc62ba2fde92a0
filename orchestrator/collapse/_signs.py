"""Leading signs: training signals that often move before a collapse. They warn; they never stop a run.

Each sign compares a training signal with its own reference and warns after `n_steps` readings in a row past its
limit:

- `entropy_fall`: the policy's entropy below `entropy_ratio` of its early level (the mean of its first `window`
  readings).
- `length_fall`: the mean response length below `length_ratio` of its running maximum.
- `grad_norm_vanish`: the grad norm below `grad_norm_ratio` of its early level (the median of its first `window`
  readings): the update has stopped moving the policy.
- `zero_advantage`: every group's advantages are 0 (`critic/advantages/max` and `min` both within 1e-6 of 0):
  GRPO gets no signal from any group.

Two more watch the train-inference mismatch (the sampler's probabilities against the trainer's, as verl logs them
when the rollout keeps its log-probs):

- `is_ess_low`: the rollout-correction importance weights' effective sample size
  (`rollout_corr/rollout_is_eff_sample_size`, logged when `algorithm.rollout_correction.rollout_is` is set) below
  `ess_limit` (0.3, the level verl's documentation calls trouble).
- `probs_gap_rise`: the mean gap between the trainer's and the sampler's token probabilities
  (`training/rollout_probs_diff_mean`) above `gap_ratio` times its early level.

How early they warn, and how often they warn on runs that never collapse, is measured on the run bank and the
miniature (benchmarks/results/calibration.md). A sign stops runs only where that measurement shows no false stop;
none does today: healthy verl runs lose 70-85% of their entropy while their score holds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.collapse._base import Verdict
from orchestrator.collapse._score import first_streak
from orchestrator.history import History

__all__ = ["MISMATCH_SIGN_NAMES", "SIGN_NAMES", "Sign", "build_signs"]

ENTROPY_METRICS = ("actor/entropy", "actor/entropy_loss")
LENGTH_METRIC = "response_length/mean"
GRAD_NORM_METRIC = "actor/grad_norm"
ADVANTAGE_MAX, ADVANTAGE_MIN = "critic/advantages/max", "critic/advantages/min"

ESS_METRIC = "rollout_corr/rollout_is_eff_sample_size"
PROBS_GAP_METRIC = "training/rollout_probs_diff_mean"

MISMATCH_SIGN_NAMES = ("is_ess_low", "probs_gap_rise")
"""The signs on the train-inference mismatch."""
SIGN_NAMES = ("entropy_fall", "length_fall", "grad_norm_vanish", "zero_advantage", *MISMATCH_SIGN_NAMES)
"""The leading signs, in the order `build_signs` returns them."""


@dataclass(frozen=True, slots=True)
class _Reading:
    step: int
    value: float
    reference: float


@dataclass(frozen=True)
class Sign:
    """One leading sign: a signal below (or above) a multiple of its reference for `n_steps` readings in a row.

    Attributes:
        name: The sign's name (one of `SIGN_NAMES`).
        metrics: The signal's metric names; the first one the run logs is read.
        reference: `early_mean`, `early_median`, `running_max`, or `fixed` (the reference is 1: `ratio` is the
            limit itself).
        ratio: The multiple of the reference past which a reading is past the limit.
        n_steps: How many readings in a row make a warning.
        window: The readings that set an early reference.
        what: The signal in words, for the reason sentence.
        above: Whether a reading is past the limit above it (a rising signal) rather than below it.
    """

    name: str
    metrics: tuple[str, ...]
    reference: str
    ratio: float
    n_steps: int = 3
    window: int = 5
    what: str = ""
    above: bool = False

    def warn(self, history: History) -> Verdict | None:
        """Return the warning at the first streak past the limit, or None. Pure, like a rule's `check`."""
        metric = next((m for m in self.metrics if any(m in p.metrics for p in history)), None)
        # The run does not log this signal.
        if metric is None:
            return None
        values = [(p.step, p.metrics[metric]) for p in history if math.isfinite(p.metrics.get(metric, math.nan))]
        readings = self._readings(values)
        if self.above:
            streak = first_streak(readings, lambda r: r.value > self.ratio * r.reference, self.n_steps)
        else:
            streak = first_streak(readings, lambda r: r.value < self.ratio * r.reference, self.n_steps)
        if streak is None:
            return None
        onset, last = streak[0], streak[-1]
        side = "above" if self.above else "below"
        limit = (f"{self.ratio:g}" if self.reference == "fixed"
                 else f"{self.ratio:g}x its {_REFERENCE_WORDS[self.reference]} {last.reference:.4g}")
        return Verdict(
            rule=self.name,
            step=last.step,
            reason=(
                f"{self.what} `{metric}` was {last.value:.4g} at step {last.step}, {side} {limit} for "
                f"{self.n_steps} step(s) in a row since step {onset.step}"
            ),
            evidence={
                "metric": metric,
                "value": last.value,
                "reference": last.reference,
                "reference_kind": self.reference,
                "ratio": self.ratio,
                "onset_step": onset.step,
            },
        )

    def _readings(self, values: Sequence[tuple[int, float]]) -> list[_Reading]:
        if self.reference == "fixed":
            return [_Reading(step, value, 1.0) for step, value in values]
        if self.reference == "running_max":
            readings, peak = [], -math.inf
            for step, value in values:
                peak = max(peak, value)
                readings.append(_Reading(step, value, peak))
            return [r for r in readings if r.reference > 0]
        # An early reference: known once `window` readings are in; the readings after it are judged.
        if len(values) <= self.window:
            return []
        early = [value for _, value in values[: self.window]]
        reference = statistics.fmean(early) if self.reference == "early_mean" else statistics.median(early)
        if reference <= 0:
            return []
        return [_Reading(step, value, reference) for step, value in values[self.window :]]


@dataclass(frozen=True)
class _ZeroAdvantage:
    """`zero_advantage`: every advantage of the batch is 0 for `n_steps` steps in a row."""

    n_steps: int = 2
    name: str = "zero_advantage"

    def warn(self, history: History) -> Verdict | None:
        """Return the warning at the first streak of all-zero advantages, or None."""
        readings = [
            (p.step, p.metrics[ADVANTAGE_MAX], p.metrics[ADVANTAGE_MIN])
            for p in history
            if ADVANTAGE_MAX in p.metrics and ADVANTAGE_MIN in p.metrics
        ]
        flat: Callable[[tuple[int, float, float]], bool] = lambda r: abs(r[1]) <= 1e-6 and abs(r[2]) <= 1e-6
        streak = first_streak(readings, flat, self.n_steps)
        if streak is None:
            return None
        return Verdict(
            rule=self.name,
            step=streak[-1][0],
            reason=(
                f"every advantage was 0 (`{ADVANTAGE_MAX}` and `{ADVANTAGE_MIN}`) for {self.n_steps} step(s) in a row "
                f"since step {streak[0][0]}: no group's rewards differ"
            ),
            evidence={"onset_step": streak[0][0]},
        )


_REFERENCE_WORDS = {"early_mean": "early level", "early_median": "early level", "running_max": "running maximum"}


def build_signs(
    *,
    entropy_ratio: float = 0.3,
    length_ratio: float = 0.5,
    grad_norm_ratio: float = 0.05,
    ess_limit: float = 0.3,
    gap_ratio: float = 3.0,
    n_steps: int = 3,
    window: int = 5,
) -> list[Sign | _ZeroAdvantage]:
    """Return the leading signs with these limits (defaults set before any measurement, not tuned).

    Args:
        entropy_ratio: `entropy_fall` below this fraction of the early entropy.
        length_ratio: `length_fall` below this fraction of the running maximum length.
        grad_norm_ratio: `grad_norm_vanish` below this fraction of the early grad norm.
        ess_limit: `is_ess_low` below this effective sample size.
        gap_ratio: `probs_gap_rise` above this multiple of the early probability gap.
        n_steps: Readings in a row that make a warning.
        window: Readings that set an early level.
    """
    return [
        Sign("entropy_fall", ENTROPY_METRICS, "early_mean", entropy_ratio, n_steps, window, "the policy's entropy"),
        Sign("length_fall", (LENGTH_METRIC,), "running_max", length_ratio, n_steps, window, "the response length"),
        Sign("grad_norm_vanish", (GRAD_NORM_METRIC,), "early_median", grad_norm_ratio, n_steps, window, "the grad norm"),
        _ZeroAdvantage(),
        Sign("is_ess_low", (ESS_METRIC,), "fixed", ess_limit, n_steps, window,
             "the importance weights' effective sample size"),
        Sign("probs_gap_rise", (PROBS_GAP_METRIC,), "early_median", gap_ratio, n_steps, window,
             "the gap between the trainer's and the sampler's token probabilities", above=True),
    ]
