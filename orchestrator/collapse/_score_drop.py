"""Stop when the objective stays well below its best for several evaluations in a row."""

from __future__ import annotations

from orchestrator.collapse._base import Baseline, Mode, Verdict
from orchestrator.collapse._score import describe_threshold, eval_evidence, first_streak, judge_evals
from orchestrator.collapse._validation import (
    check_at_least,
    check_baseline,
    check_metric,
    check_mode,
    check_non_negative,
    check_open_unit,
)
from orchestrator.history import History


class ScoreDropRule:
    """Fires when `n_evals` consecutive evaluations have dropped by `drop` of the best score's gain.

    With `mode="max"`, the default baseline 0 and positive scores, an evaluation has dropped when it is below
    `(1 - drop) x best`, the best being the best evaluation so far; with `mode="min"`, when it is above
    `(1 + drop) x best`. `baseline` measures the gain from another origin (see `orchestrator.collapse._score`).
    Evaluations before `grace_steps` set the best but are never judged. NaN evaluations are skipped (and
    `NonFiniteRule` stops on them).

    Args:
        metric: The objective (a validation metric, logged on evaluation steps only).
        mode: `max` or `min`.
        drop: The fraction of the gain that is lost, in (0, 1).
        n_evals: How many consecutive dropped evaluations fire the rule.
        grace_steps: Evaluations at steps below this are not judged.
        baseline: The origin of the gain: a number, or `"first"` for the first evaluation.
        min_delta: A drop must also exceed this absolute amount.

    Example:
        >>> from orchestrator.history import StepMetrics
        >>> scores = {75: 2.21, 135: 1.60, 140: 0.43, 145: 0.0}
        >>> history = [StepMetrics(step, {"val": score}) for step, score in scores.items()]
        >>> verdict = ScoreDropRule("val").check(history)
        >>> verdict.step, verdict.evidence["onset_step"]
        (140, 135)
    """

    name = "score_drop"

    def __init__(
        self,
        metric: str,
        mode: Mode = "max",
        *,
        drop: float = 0.25,
        n_evals: int = 2,
        grace_steps: int = 0,
        baseline: Baseline = 0.0,
        min_delta: float = 0.0,
    ) -> None:
        self._metric = check_metric("metric", metric)
        self._mode: Mode = check_mode(mode)  # type: ignore[assignment]
        self._drop = check_open_unit("drop", drop)
        self._n_evals = check_at_least("n_evals", n_evals, 1)
        self._grace_steps = check_at_least("grace_steps", grace_steps, 0)
        self._baseline: Baseline = check_baseline(baseline)  # type: ignore[assignment]
        self._min_delta = check_non_negative("min_delta", min_delta)

    def check(self, history: History) -> Verdict | None:
        """Return a verdict at the `n_evals`-th consecutive dropped evaluation, or None."""
        evals = judge_evals(
            history,
            self._metric,
            mode=self._mode,
            drop=self._drop,
            baseline=self._baseline,
            min_delta=self._min_delta,
        )
        # Evaluations inside the warm-up set the best but are not judged.
        judged = [e for e in evals if e.step >= self._grace_steps]
        streak = first_streak(judged, lambda e: e.dropped, self._n_evals)
        if streak is None:
            return None
        onset, last = streak[0], streak[-1]
        return Verdict(
            rule=self.name,
            step=last.step,
            reason=(
                f"`{self._metric}` was {last.value:.4g} at step {last.step}, past "
                f"{describe_threshold(last, self._drop, self._mode)} for {self._n_evals} evaluation(s) in a row "
                f"since step {onset.step}."
            ),
            evidence={
                **eval_evidence(last),
                "metric": self._metric,
                "mode": self._mode,
                "drop": self._drop,
                "n_evals": self._n_evals,
                "evals": [[e.step, e.value] for e in streak],
                "onset_step": onset.step,
                "onset_eval_step": onset.step,
            },
        )
