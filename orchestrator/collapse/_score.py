"""How the score rules judge an objective: the drop of each evaluation from the best so far.

A drop is measured as a fraction of the best score's gain over a baseline. With `mode="max"` an evaluation has
dropped by `drop` when

    value < best - drop * |best - baseline|

and with `mode="min"` when `value > best + drop * |best - baseline|`. With the default baseline 0 and positive
scores this is `value < (1 - drop) * best` (max) or `value > (1 + drop) * best` (min). For a score that can be
negative (a reward in [-1, 1]) set the baseline to its worst value, or to `"first"` (the run's first
evaluation, e.g. the validation before training): the gain is then measured from where the run started, so a
score near 0 or below 0 is judged on the same scale. While the best equals the baseline there is no gain to lose
and nothing counts as a drop. NaN and inf evaluations are skipped here (`NonFiniteRule` judges them).

With a noise model (`orchestrator.collapse._noise.EvalNoise`), a drop must also be beyond the evaluation's noise:
at least `z` standard errors of the difference between the best evaluation and this one. A run evaluated on 30
problems then needs a much larger fall than one evaluated on 1319 before any rule calls it a drop. While the noise
is not known (no size, too few evaluations for the run's own spread), a drop must lose at least `unknown_drop`
(half) of the gain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.collapse._base import Baseline, Mode
from orchestrator.collapse._noise import EvalNoise, Noise
from orchestrator.history import History, series

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ScoredEval:
    """One finite evaluation of the objective, judged against the best before it (itself included)."""

    step: int
    value: float
    best: float
    best_step: int
    baseline: float
    threshold: float | None
    dropped: bool
    z: float | None = None
    noise: Noise | None = None

    @property
    def lost(self) -> float:
        """Return the fraction of the best score's gain over the baseline that this evaluation lost (0 without a gain)."""
        gain = abs(self.best - self.baseline)
        return 0.0 if gain == 0.0 else abs(self.best - self.value) / gain


def judge_evals(
    history: History,
    metric: str,
    *,
    mode: Mode,
    drop: float,
    baseline: Baseline,
    min_delta: float = 0.0,
    noise: EvalNoise | None = None,
) -> list[ScoredEval]:
    """Return every finite evaluation of `metric`, each judged against the running best.

    Args:
        history: The run's points in increasing step order.
        metric: The objective.
        mode: `max` or `min`.
        drop: The fraction of the gain over the baseline that counts as a drop.
        baseline: A fixed value or `"first"`.
        min_delta: The drop must also exceed this absolute amount.
        noise: The objective's noise model; None (or `z` 0) judges by the threshold alone.
    """
    evals = series(history, metric, finite=True)
    if not evals:
        return []
    base = evals[0][1] if baseline == "first" else float(baseline)
    judged: list[ScoredEval] = []
    best, best_step = evals[0][1], evals[0][0]
    healthy: list[float] = []  # the evaluations not judged dropped: the noise is measured on them
    for step, value in evals:
        if better(value, best, mode):
            best, best_step = value, step
        threshold = _threshold(best, base, drop, mode)
        crossed = threshold is not None and better(threshold, value, mode) and abs(best - value) > min_delta
        dropped = crossed
        known = z = None
        if noise is not None and noise.z > 0 and better(best, value, mode):
            known = noise.at(healthy, value, best)
            if known is not None:
                sigma = known.diff_sigma(best, value)
                z = math.inf if sigma == 0.0 else abs(best - value) / sigma
                dropped = dropped and z >= noise.z
            else:
                # The noise is not known yet: only a severe drop can be told from it.
                gain = abs(best - base)
                dropped = dropped and gain > 0.0 and abs(best - value) >= noise.unknown_drop * gain
        # The noise is measured on healthy evaluations: not one that crossed the threshold before the noise was
        # known (it may be the start of a fall, and would hide the rest of it in a wide spread).
        if not dropped and not (crossed and noise is not None and noise.z > 0 and known is None):
            healthy.append(value)
        judged.append(ScoredEval(step, value, best, best_step, base, threshold, dropped, z, known))
    return judged


def latest_evals(evals: Sequence[ScoredEval], steps: Iterable[int]) -> list[ScoredEval | None]:
    """Return, for each of `steps` (in increasing order), the last evaluation at or before it, or None.

    One pass over both sequences, so that a rule stays linear in the length of the history.
    """
    latest: list[ScoredEval | None] = []
    index = 0
    for step in steps:
        while index < len(evals) and evals[index].step <= step:
            index += 1
        latest.append(evals[index - 1] if index else None)
    return latest


def first_streak(items: Iterable[T], condition: Callable[[T], bool], n: int) -> list[T] | None:
    """Return the first `n` consecutive items that all meet `condition`, or None."""
    streak: list[T] = []
    for item in items:
        streak = [*streak, item] if condition(item) else []
        if len(streak) == n:
            return streak
    return None


def describe_threshold(evaluation: ScoredEval, drop: float, mode: Mode) -> str:
    """Return e.g. `1.66 (best 2.21 at step 75 less 25% of its gain over 0)` for a reason sentence."""
    sign = "less" if mode == "max" else "plus"
    return (
        f"{evaluation.threshold:.4g} (best {evaluation.best:.4g} at step {evaluation.best_step} {sign} "
        f"{drop:.0%} of its gain over {evaluation.baseline:.4g})"
    )


def eval_evidence(evaluation: ScoredEval) -> dict[str, float | int | str | None]:
    """Return the evidence fields that describe one judged evaluation (with its noise, when known)."""
    evidence: dict[str, float | int | str | None] = {
        "score": evaluation.value,
        "score_step": evaluation.step,
        "best": evaluation.best,
        "best_step": evaluation.best_step,
        "baseline": evaluation.baseline,
        "threshold": evaluation.threshold,
    }
    if evaluation.noise is not None:
        evidence["z"] = evaluation.z
        evidence["noise"] = evaluation.noise.describe()
        evidence["noise_sd"] = evaluation.noise.diff_sigma(evaluation.best, evaluation.value)
    return evidence


def describe_noise(evaluation: ScoredEval) -> str:
    """Return e.g. ` (4.2 standard errors; binomial on 30 problems (spec))`, or an empty string without noise."""
    if evaluation.noise is None or evaluation.z is None:
        return ""
    return f" ({evaluation.z:.3g} standard errors; {evaluation.noise.describe()})"


def better(a: float, b: float, mode: Mode) -> bool:
    """Return whether score `a` is better than `b`: higher with `mode="max"`, lower with `mode="min"`."""
    return a > b if mode == "max" else a < b


def _threshold(best: float, baseline: float, drop: float, mode: Mode) -> float | None:
    gain = abs(best - baseline)
    # No gain over the baseline yet: nothing to lose.
    if gain == 0.0:
        return None
    return best - drop * gain if mode == "max" else best + drop * gain
