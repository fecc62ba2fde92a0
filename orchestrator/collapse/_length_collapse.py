"""Stop when responses shrink to a fraction of their longest while the score drops."""

from __future__ import annotations

import math

from orchestrator.collapse._base import Baseline, Mode, Verdict
from orchestrator.collapse._noise import EvalNoise
from orchestrator.collapse._score import (
    ScoredEval,
    describe_threshold,
    eval_evidence,
    first_streak,
    judge_evals,
    latest_evals,
)
from orchestrator.collapse._validation import (
    check_at_least,
    check_baseline,
    check_metric,
    check_mode,
    check_open_unit,
)
from orchestrator.history import History


class LengthCollapseRule:
    """Fires after `n_steps` consecutive steps with a short response length and a dropped score.

    A step is short when the mean response length is below `ratio` times its running maximum (over every step so
    far). The score at a step is the latest evaluation of the objective at or before it; it has dropped when it
    lost `drop` of the best score's gain over `baseline`. Either sign alone is common in healthy runs (responses
    get shorter as a model stops rambling), so only both together fire; because the shrinking length
    corroborates it, one dropped evaluation is enough, which lets this rule stop a run an evaluation before
    `ScoreDropRule`.

    Args:
        metric: The objective.
        mode: `max` or `min`.
        length_metric: The response length metric.
        ratio: The fraction of the running maximum below which a length is short, in (0, 1).
        drop: The fraction of the gain the score must have lost, in (0, 1).
        n_steps: How many consecutive short steps with a dropped score fire the rule.
        grace_steps: Steps below this are not judged (they still set the running maximum and the best).
        baseline: The origin of the score's gain: a number, or `"first"`.
        noise: The objective's noise model: a dropped score must also be beyond the noise.
    """

    name = "length_collapse"

    def __init__(
        self,
        metric: str,
        mode: Mode = "max",
        *,
        length_metric: str = "response_length/mean",
        ratio: float = 0.5,
        drop: float = 0.25,
        n_steps: int = 2,
        grace_steps: int = 0,
        baseline: Baseline = 0.0,
        noise: EvalNoise | None = None,
    ) -> None:
        self._metric = check_metric("metric", metric)
        self._mode: Mode = check_mode(mode)  # type: ignore[assignment]
        self._length_metric = check_metric("length_metric", length_metric)
        self._ratio = check_open_unit("ratio", ratio)
        self._drop = check_open_unit("drop", drop)
        self._n_steps = check_at_least("n_steps", n_steps, 1)
        self._grace_steps = check_at_least("grace_steps", grace_steps, 0)
        self._baseline: Baseline = check_baseline(baseline)  # type: ignore[assignment]
        self._noise = noise

    def check(self, history: History) -> Verdict | None:
        """Return a verdict at the `n_steps`-th consecutive short step with a dropped score, or None."""
        evals = judge_evals(history, self._metric, mode=self._mode, drop=self._drop, baseline=self._baseline, noise=self._noise)
        # No evaluation yet: the score cannot have dropped.
        if not evals:
            return None
        lengths: list[tuple[int, float, float]] = []
        longest = -math.inf
        for point in history:
            length = point.metrics.get(self._length_metric, math.nan)
            # Not logged, or not a number: it says nothing about the length.
            if not math.isfinite(length):
                continue
            longest = max(longest, length)
            lengths.append((point.step, length, longest))
        scores = latest_evals(evals, (step for step, _, _ in lengths))
        steps = [(*entry, score) for entry, score in zip(lengths, scores)]

        def collapsed(s: tuple[int, float, float, ScoredEval | None]) -> bool:
            step, length, longest, score = s
            return step >= self._grace_steps and length < self._ratio * longest and score is not None and score.dropped

        streak = first_streak(steps, collapsed, self._n_steps)
        if streak is None:
            return None
        onset_step, onset_score = streak[0][0], streak[0][3]
        last_step, length, longest, score = streak[-1]
        assert score is not None and onset_score is not None  # the streak's condition guarantees them
        return Verdict(
            rule=self.name,
            step=last_step,
            reason=(
                f"`{self._length_metric}` was {length:.4g} at step {last_step}, {length / longest:.0%} of its "
                f"maximum {longest:.4g} (limit {self._ratio:.0%}) for {self._n_steps} step(s) in a row since step "
                f"{onset_step}, while `{self._metric}` was {score.value:.4g}, past "
                f"{describe_threshold(score, self._drop, self._mode)}."
            ),
            evidence={
                **eval_evidence(score),
                "metric": self._metric,
                "length_metric": self._length_metric,
                "length": length,
                "max_length": longest,
                "ratio": self._ratio,
                "lengths": [[step, value] for step, value, _, _ in streak],
                "drop": self._drop,
                "onset_step": onset_step,
                "onset_eval_step": onset_score.step,
            },
        )
