"""Stop when the objective stays well below its best for several evaluations in a row, or falls far at once."""

from __future__ import annotations

from orchestrator.collapse._base import Baseline, Mode, Verdict
from orchestrator.collapse._noise import EvalNoise
from orchestrator.collapse._score import (
    ScoredEval,
    describe_noise,
    describe_threshold,
    eval_evidence,
    first_streak,
    judge_evals,
)
from orchestrator.collapse._validation import (
    check_at_least,
    check_baseline,
    check_metric,
    check_mode,
    check_fraction,
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

    With a noise model, an evaluation has dropped only when it is also `noise.z` standard errors below the best
    (`orchestrator.collapse._noise`). A severe drop fires at once, without waiting for `n_evals`: one evaluation
    that lost at least `severe_drop` of the gain and is at least `severe_z` standard errors below the best (the
    noise must be known). `at_end` judges a finished run whose last evaluations dropped but were too few to fire.

    Args:
        metric: The objective (a validation metric, logged on evaluation steps only).
        mode: `max` or `min`.
        drop: The fraction of the gain that is lost, in (0, 1).
        n_evals: How many consecutive dropped evaluations fire the rule.
        grace_steps: Evaluations at steps below this are not judged.
        baseline: The origin of the gain: a number, or `"first"` for the first evaluation.
        min_delta: A drop must also exceed this absolute amount.
        noise: The objective's noise model, or None to judge by the threshold alone.
        severe_drop: The fraction of the gain a single evaluation must lose to fire at once, in (0, 1].
        severe_z: How many standard errors below the best that evaluation must be.

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
        noise: EvalNoise | None = None,
        severe_drop: float = 0.5,
        severe_z: float = 4.5,
    ) -> None:
        self._metric = check_metric("metric", metric)
        self._mode: Mode = check_mode(mode)  # type: ignore[assignment]
        self._drop = check_open_unit("drop", drop)
        self._n_evals = check_at_least("n_evals", n_evals, 1)
        self._grace_steps = check_at_least("grace_steps", grace_steps, 0)
        self._baseline: Baseline = check_baseline(baseline)  # type: ignore[assignment]
        self._min_delta = check_non_negative("min_delta", min_delta)
        self._noise = noise
        self._severe_drop = check_fraction("severe_drop", severe_drop)
        self._severe_z = check_non_negative("severe_z", severe_z)

    def check(self, history: History) -> Verdict | None:
        """Return a verdict at the `n_evals`-th consecutive dropped evaluation or a severe drop, or None."""
        return self._fire(self._judged(history))

    def at_end(self, history: History) -> Verdict | None:
        """Judge a finished run: a verdict when its last evaluations dropped but were fewer than `n_evals`.

        Such a run ended collapsed, unconfirmed: no later evaluation could show the drop was lasting. Returns
        None when `check` fires (that verdict is the confirmed one) or when the last evaluation did not drop.
        """
        judged = self._judged(history)
        if self._fire(judged) is not None:
            return None
        trailing: list[ScoredEval] = []
        for evaluation in reversed(judged):
            if not evaluation.dropped:
                break
            trailing.insert(0, evaluation)
        if not trailing:
            return None
        return self._verdict(trailing, confirmed=False)

    def _fire(self, judged: list[ScoredEval]) -> Verdict | None:
        """The verdict at the first severe drop or `n_evals`-th consecutive dropped evaluation, whichever is first."""
        streak = first_streak(judged, lambda e: e.dropped, self._n_evals)
        severe = next((e for e in judged if self._severe(e)), None)
        if severe is not None and (streak is None or severe.step < streak[-1].step):
            return self._verdict([severe], severe=True)
        if streak is None:
            return None
        return self._verdict(streak)

    def _judged(self, history: History) -> list[ScoredEval]:
        evals = judge_evals(
            history,
            self._metric,
            mode=self._mode,
            drop=self._drop,
            baseline=self._baseline,
            min_delta=self._min_delta,
            noise=self._noise,
        )
        # Evaluations inside the warm-up set the best but are not judged.
        return [e for e in evals if e.step >= self._grace_steps]

    def _severe(self, evaluation: ScoredEval) -> bool:
        return (
            evaluation.dropped
            and evaluation.z is not None
            and evaluation.z >= self._severe_z
            and evaluation.lost >= self._severe_drop
        )

    def _verdict(self, streak: list[ScoredEval], *, severe: bool = False, confirmed: bool = True) -> Verdict:
        onset, last = streak[0], streak[-1]
        threshold = describe_threshold(last, self._drop, self._mode)
        noise = describe_noise(last)
        if severe:
            how = f"a severe drop: {last.lost:.0%} of its gain lost at once{noise}"
        elif not confirmed:
            how = (
                f"at the run's last {len(streak)} evaluation(s){noise}; unconfirmed: the run ended before "
                f"{self._n_evals} evaluations in a row"
            )
        else:
            how = f"for {self._n_evals} evaluation(s) in a row since step {onset.step}{noise}"
        return Verdict(
            rule=self.name,
            step=last.step,
            reason=f"`{self._metric}` was {last.value:.4g} at step {last.step}, past {threshold}, {how}.",
            evidence={
                **eval_evidence(last),
                "metric": self._metric,
                "mode": self._mode,
                "drop": self._drop,
                "n_evals": self._n_evals,
                "evals": [[e.step, e.value] for e in streak],
                "onset_step": onset.step,
                "onset_eval_step": onset.step,
                "severe": severe,
                "confirmed": confirmed,
            },
        )
