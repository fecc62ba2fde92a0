"""Warn when entropy collapses or explodes; stop when the score drops as well."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

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
    check_above_one,
    check_at_least,
    check_baseline,
    check_metric,
    check_mode,
    check_open_unit,
)
from orchestrator.history import History

DEFAULT_METRICS = ("actor/entropy", "actor/entropy_loss")


@dataclass(frozen=True, slots=True)
class _Reading:
    step: int
    entropy: float
    kind: str | None
    score: ScoredEval | None


class EntropyRule:
    """Warns after `n_steps` consecutive steps of entropy far from its early level; fires if the score dropped.

    The early level is the mean of the first `window` values. Entropy has collapsed below `collapse_ratio` times
    that level and exploded above `explosion_ratio` times it. Healthy GRPO runs lose 70-85% of their entropy
    while the score holds, so entropy alone only warns (`warn`); `check` fires when the streak ends at a step
    whose latest evaluation of the objective lost `drop` of the best score's gain over `baseline`.

    Args:
        metric: The objective.
        mode: `max` or `min`.
        entropy_metrics: Candidate entropy metrics; the first one the run logged is used (older verl logs the
            entropy as `actor/entropy_loss`).
        window: How many early values set the early level.
        collapse_ratio: The fraction of the early level below which entropy has collapsed, in (0, 1).
        explosion_ratio: The multiple of the early level above which entropy has exploded, above 1.
        drop: The fraction of the gain the score must have lost, in (0, 1).
        n_steps: How many consecutive anomalous steps make a warning.
        grace_steps: Steps below this are not judged.
        baseline: The origin of the score's gain: a number, or `"first"`.
        noise: The objective's noise model: a dropped score must also be beyond the noise.
    """

    name = "entropy"

    def __init__(
        self,
        metric: str,
        mode: Mode = "max",
        *,
        entropy_metrics: Sequence[str] = DEFAULT_METRICS,
        window: int = 5,
        collapse_ratio: float = 0.05,
        explosion_ratio: float = 3.0,
        drop: float = 0.25,
        n_steps: int = 3,
        grace_steps: int = 0,
        baseline: Baseline = 0.0,
        noise: EvalNoise | None = None,
    ) -> None:
        self._metric = check_metric("metric", metric)
        self._mode: Mode = check_mode(mode)  # type: ignore[assignment]
        if not entropy_metrics:
            raise ValueError("`entropy_metrics` must name at least 1 metric but got 0.")
        self._entropy_metrics = tuple(check_metric("entropy_metrics", m) for m in entropy_metrics)
        self._window = check_at_least("window", window, 1)
        self._collapse_ratio = check_open_unit("collapse_ratio", collapse_ratio)
        self._explosion_ratio = check_above_one("explosion_ratio", explosion_ratio)
        self._drop = check_open_unit("drop", drop)
        self._n_steps = check_at_least("n_steps", n_steps, 1)
        self._grace_steps = check_at_least("grace_steps", grace_steps, 0)
        self._baseline: Baseline = check_baseline(baseline)  # type: ignore[assignment]
        self._noise = noise

    def check(self, history: History) -> Verdict | None:
        """Return a verdict when an entropy anomaly streak ends on a dropped score, or None."""
        return self._judge(history, need_drop=True)

    def warn(self, history: History) -> Verdict | None:
        """Return a warning at the first entropy anomaly streak, score or not, or None."""
        return self._judge(history, need_drop=False)

    def _judge(self, history: History, *, need_drop: bool) -> Verdict | None:
        metric = next((m for m in self._entropy_metrics if any(m in p.metrics for p in history)), None)
        # The run logs no entropy: nothing to judge.
        if metric is None:
            return None
        values = [(p.step, p.metrics[metric]) for p in history if math.isfinite(p.metrics.get(metric, math.nan))]
        # Too few values to know the early level yet.
        if len(values) <= self._window:
            return None
        early = statistics.fmean(value for _, value in values[: self._window])
        # A zero early level gives no scale to compare with.
        if early <= 0.0:
            return None
        evals = judge_evals(history, self._metric, mode=self._mode, drop=self._drop, baseline=self._baseline, noise=self._noise)
        judged = [(step, value) for step, value in values[self._window :] if step >= self._grace_steps]
        scores = latest_evals(evals, (step for step, _ in judged))
        readings = [
            _Reading(step, value, self._anomaly(value, early), score)
            for (step, value), score in zip(judged, scores)
        ]

        def anomalous(r: _Reading) -> bool:
            return r.kind is not None and (not need_drop or (r.score is not None and r.score.dropped))

        streak = first_streak(readings, anomalous, self._n_steps)
        if streak is None:
            return None
        return self._verdict(metric, early, streak, need_drop=need_drop)

    def _anomaly(self, value: float, early: float) -> str | None:
        if value < self._collapse_ratio * early:
            return "collapse"
        if value > self._explosion_ratio * early:
            return "explosion"
        return None

    def _verdict(self, metric: str, early: float, streak: list[_Reading], *, need_drop: bool) -> Verdict:
        onset, last = streak[0], streak[-1]
        limit = self._collapse_ratio if last.kind == "collapse" else self._explosion_ratio
        reason = (
            f"`{metric}` was {last.entropy:.4g} at step {last.step}, {last.entropy / early:.2f}x its early level "
            f"{early:.4g} (entropy {last.kind}, limit {limit:g}x) for {self._n_steps} step(s) in a row since step "
            f"{onset.step}"
        )
        evidence: dict[str, object] = {
            "entropy_metric": metric,
            "kind": last.kind,
            "early_level": early,
            "entropy": last.entropy,
            "entropies": [[r.step, r.entropy] for r in streak],
            "limit_ratio": limit,
            "onset_step": onset.step,
        }
        if need_drop and last.score is not None:
            reason += (
                f", while `{self._metric}` was {last.score.value:.4g}, past "
                f"{describe_threshold(last.score, self._drop, self._mode)}"
            )
            evidence.update(eval_evidence(last.score), metric=self._metric, drop=self._drop)
            evidence["onset_eval_step"] = onset.score.step if onset.score else None
        return Verdict(rule=self.name, step=last.step, reason=reason + ".", evidence=evidence)
