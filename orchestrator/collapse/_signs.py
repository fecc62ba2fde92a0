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

__all__ = ["SIGN_NAMES", "Sign", "build_signs"]

ENTROPY_METRICS = ("actor/entropy", "actor/entropy_loss")
LENGTH_METRIC = "response_length/mean"
GRAD_NORM_METRIC = "actor/grad_norm"
ADVANTAGE_MAX, ADVANTAGE_MIN = "critic/advantages/max", "critic/advantages/min"

SIGN_NAMES = ("entropy_fall", "length_fall", "grad_norm_vanish", "zero_advantage")
"""The leading signs, in the order `build_signs` returns them."""


@dataclass(frozen=True, slots=True)
class _Reading:
    step: int
    value: float
    reference: float


@dataclass(frozen=True)
class Sign:
    """One leading sign: a signal below a fraction of its reference for `n_steps` readings in a row.

    Attributes:
        name: The sign's name (one of `SIGN_NAMES`).
        metrics: The signal's metric names; the first one the run logs is read.
        reference: `early_mean`, `early_median` or `running_max`.
        ratio: The fraction of the reference below which a reading is past the limit.
        n_steps: How many readings in a row make a warning.
        window: The readings that set an early reference.
        what: The signal in words, for the reason sentence.
    """

    name: str
    metrics: tuple[str, ...]
    reference: str
    ratio: float
    n_steps: int = 3
    window: int = 5
    what: str = ""

    def warn(self, history: History) -> Verdict | None:
        """Return the warning at the first streak past the limit, or None. Pure, like a rule's `check`."""
        metric = next((m for m in self.metrics if any(m in p.metrics for p in history)), None)
        # The run does not log this signal.
        if metric is None:
            return None
        values = [(p.step, p.metrics[metric]) for p in history if math.isfinite(p.metrics.get(metric, math.nan))]
        readings = self._readings(values)
        streak = first_streak(readings, lambda r: r.value < self.ratio * r.reference, self.n_steps)
        if streak is None:
            return None
        onset, last = streak[0], streak[-1]
        return Verdict(
            rule=self.name,
            step=last.step,
            reason=(
                f"{self.what} `{metric}` was {last.value:.4g} at step {last.step}, below {self.ratio:g}x its "
                f"{_REFERENCE_WORDS[self.reference]} {last.reference:.4g} for {self.n_steps} step(s) in a row since "
                f"step {onset.step}"
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
    n_steps: int = 3,
    window: int = 5,
) -> list[Sign | _ZeroAdvantage]:
    """Return the leading signs with these limits (defaults set before any measurement, not tuned).

    Args:
        entropy_ratio: `entropy_fall` below this fraction of the early entropy.
        length_ratio: `length_fall` below this fraction of the running maximum length.
        grad_norm_ratio: `grad_norm_vanish` below this fraction of the early grad norm.
        n_steps: Readings in a row that make a warning.
        window: Readings that set an early level.
    """
    return [
        Sign("entropy_fall", ENTROPY_METRICS, "early_mean", entropy_ratio, n_steps, window, "the policy's entropy"),
        Sign("length_fall", (LENGTH_METRIC,), "running_max", length_ratio, n_steps, window, "the response length"),
        Sign("grad_norm_vanish", (GRAD_NORM_METRIC,), "early_median", grad_norm_ratio, n_steps, window, "the grad norm"),
        _ZeroAdvantage(),
    ]
