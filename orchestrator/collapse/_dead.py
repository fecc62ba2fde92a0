"""Stop when training has stopped moving: grad norm ~0 while the score is far below its best."""

from __future__ import annotations

import math

from orchestrator.collapse._base import Baseline, Mode, Verdict
from orchestrator.collapse._noise import EvalNoise
from orchestrator.collapse._score import describe_threshold, eval_evidence, first_streak, judge_evals, latest_evals
from orchestrator.collapse._validation import (
    check_at_least,
    check_baseline,
    check_metric,
    check_mode,
    check_open_unit,
    check_positive,
)
from orchestrator.history import History


class DeadRule:
    """Fires after `n_steps` consecutive steps with a grad norm at most `threshold` and a dropped score.

    This is GRPO's dead state: every group's samples are identical, so every advantage, the PG loss and the
    gradient are 0. Without a KL loss and an entropy bonus nothing moves the policy out of it again. The score at a
    step is the latest evaluation of the objective at or before it; it has dropped when it lost `drop` (half, by
    default) of the best score's gain over `baseline` (see `orchestrator.collapse._score`). Steps that did not log
    the grad norm are skipped; NaN grad norms are left to `NonFiniteRule`.

    Args:
        metric: The objective.
        mode: `max` or `min`.
        grad_norm_metric: The grad norm metric.
        threshold: The grad norm at or below which a step counts as dead.
        drop: The fraction of the gain the score must have lost, in (0, 1).
        n_steps: How many consecutive dead steps fire the rule.
        baseline: The origin of the score's gain: a number, or `"first"`.
        noise: The objective's noise model: a dropped score must also be beyond the noise.
    """

    name = "dead"

    def __init__(
        self,
        metric: str,
        mode: Mode = "max",
        *,
        grad_norm_metric: str = "actor/grad_norm",
        threshold: float = 1e-3,
        drop: float = 0.5,
        n_steps: int = 3,
        baseline: Baseline = 0.0,
        noise: EvalNoise | None = None,
    ) -> None:
        self._metric = check_metric("metric", metric)
        self._mode: Mode = check_mode(mode)  # type: ignore[assignment]
        self._grad_norm_metric = check_metric("grad_norm_metric", grad_norm_metric)
        self._threshold = check_positive("threshold", threshold)
        self._drop = check_open_unit("drop", drop)
        self._n_steps = check_at_least("n_steps", n_steps, 1)
        self._baseline: Baseline = check_baseline(baseline)  # type: ignore[assignment]
        self._noise = noise

    def check(self, history: History) -> Verdict | None:
        """Return a verdict at the `n_steps`-th consecutive dead step, or None."""
        evals = judge_evals(history, self._metric, mode=self._mode, drop=self._drop, baseline=self._baseline, noise=self._noise)
        # No evaluation yet: the score cannot have dropped.
        if not evals:
            return None
        norms = [
            (point.step, point.metrics[self._grad_norm_metric])
            for point in history
            if math.isfinite(point.metrics.get(self._grad_norm_metric, math.nan))
        ]
        scores = latest_evals(evals, (step for step, _ in norms))
        steps = [(step, norm, score) for (step, norm), score in zip(norms, scores)]
        streak = first_streak(
            steps,
            lambda s: s[1] <= self._threshold and s[2] is not None and s[2].dropped,
            self._n_steps,
        )
        if streak is None:
            return None
        onset_step, last_step = streak[0][0], streak[-1][0]
        score = streak[-1][2]
        assert score is not None  # the streak's condition guarantees it
        return Verdict(
            rule=self.name,
            step=last_step,
            reason=(
                f"`{self._grad_norm_metric}` was at most {self._threshold:g} for {self._n_steps} step(s) in a row "
                f"since step {onset_step} while `{self._metric}` was {score.value:.4g}, past "
                f"{describe_threshold(score, self._drop, self._mode)}."
            ),
            evidence={
                **eval_evidence(score),
                "metric": self._metric,
                "grad_norm_metric": self._grad_norm_metric,
                "grad_norm_threshold": self._threshold,
                "grad_norms": [[step, norm] for step, norm, _ in streak],
                "drop": self._drop,
                "onset_step": onset_step,
                "onset_eval_step": streak[0][2].step if streak[0][2] else None,
            },
        )
