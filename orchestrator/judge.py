"""The trial judge: what a trial's points mean for its scheduler, its best checkpoint and its collapse rules.

Pure: points in; each point's objective value, the best evaluation, what to report to the scheduler and the
collapse verdict out. No store, no Ray, no trainer. The live trial (`orchestrator.engine`) feeds it the batches of
points it reads from the trainer; `ablate replay` feeds it recorded histories; both therefore stop, report and
keep the same things.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.collapse import (
    CollapseConfig,
    Rule,
    Verdict,
    build_rules,
    build_signs,
    collapse_walk,
    collect_warnings,
    first_verdict,
)
from orchestrator.history import StepMetrics, choose_objective, resolve_objective

__all__ = ["EvalReport", "Judgement", "Signal", "TrialJudge"]


class Signal:
    """The objective as a scheduler sees it: the best so far (`best`) or an exponential moving average (`ema`).

    A non-finite score is skipped: the signal keeps its last value (None before the first finite score).

    Args:
        kind: `best` or `ema`.
        mode: `max` or `min` (for `best`).
        alpha: The EMA's weight of the newest score.
    """

    def __init__(self, kind: str, mode: str, alpha: float) -> None:
        self._kind, self._mode, self._alpha = kind, mode, alpha
        self.value: float | None = None

    def update(self, score: float) -> float | None:
        """Take one evaluation's score; return the signal's value after it."""
        if not math.isfinite(score):
            return self.value
        if self.value is None:
            self.value = score
        elif self._kind == "ema":
            self.value = self._alpha * score + (1 - self._alpha) * self.value
        else:
            self.value = max(self.value, score) if self._mode == "max" else min(self.value, score)
        return self.value


@dataclass(frozen=True)
class EvalReport:
    """One evaluation as the scheduler is told it.

    Attributes:
        step: The evaluation's step.
        score: The objective's value (may be NaN).
        signal: The scheduler's signal after it (`Signal`); None while no finite score was seen.
        best: The best finite score so far; None while there is none.
    """

    step: int
    score: float
    signal: float | None
    best: float | None


@dataclass(frozen=True)
class Judgement:
    """What one batch of points means.

    Attributes:
        scores: Each new point's step and objective value (None where the objective is not logged or not known).
        best: The best finite evaluation (step, score) when this batch improved it, else None.
        reports: The evaluations to report to the scheduler: those before the point at which a verdict first
            fires, as if the points had been judged one at a time, however they were batched.
        verdict: The collapse verdict, if a rule fires on the history so far.
        warnings: Leading signs that warned for the first time with this batch (`orchestrator.collapse._signs`,
            and the rules' own warnings); they never stop the trial.
    """

    scores: tuple[tuple[int, float | None], ...]
    best: tuple[int, float] | None
    reports: tuple[EvalReport, ...]
    verdict: Verdict | None
    warnings: tuple[Verdict, ...] = ()


class TrialJudge:
    """Judge one trial's points as they arrive.

    Args:
        objective: The spec's `objective.metric`, or `auto` (resolved by `orchestrator.history.resolve_objective`).
        mode: `max` or `min`.
        collapse: The collapse rules' config; None turns collapse stops off.
        signal: The scheduler's signal kind (`best` or `ema`).
        ema_alpha: The EMA's weight (for `signal: ema`).
        eval_sizes: The spec's `objective.eval_sizes` (data source -> problems): which evaluation set `auto`
            takes, and how noisy its evaluations are.
    """

    def __init__(
        self,
        objective: str,
        mode: str,
        collapse: CollapseConfig | None,
        *,
        signal: str = "best",
        ema_alpha: float = 0.5,
        eval_sizes: Mapping[str, int] | None = None,
    ) -> None:
        self._metric, self._mode, self._collapse = objective, mode, collapse
        self._eval_sizes = dict(eval_sizes or {})
        self._objective: str | None = None if objective == "auto" else objective
        self._why = "named by the spec" if objective != "auto" else None
        self._rules: list[Rule] | None = None
        self._signs = build_signs() if collapse is not None else []
        self._warned: set[str] = set()
        self._signal = Signal(signal, mode, ema_alpha)
        self._best_so_far = Signal("best", mode, 1.0)
        self._history: dict[int, StepMetrics] = {}
        self._best: tuple[int, float] | None = None

    @property
    def objective(self) -> str | None:
        """The metric the trial is judged by; None while `auto` has not seen a validation metric."""
        return self._objective

    @property
    def objective_reason(self) -> str | None:
        """Why the trial is judged by `objective` (for `auto`: which evaluation set, and its size); None before."""
        return self._why

    @property
    def best(self) -> tuple[int, float] | None:
        """The best finite evaluation so far (step, score)."""
        return self._best

    @property
    def history(self) -> list[StepMetrics]:
        """Every point taken so far, in step order (points of one step merged)."""
        return [self._history[step] for step in sorted(self._history)]

    @property
    def last_step(self) -> int | None:
        """The highest step taken so far."""
        return max(self._history, default=None)

    def restore(self, points: Iterable[StepMetrics]) -> tuple[tuple[int, float | None], ...]:
        """Take the points of earlier attempts (a resumed trial): as `take`, but nothing is judged or reported.

        The scheduler's signal and the best so far continue from them, as if they had been reported.

        Returns:
            Each point's step and objective value.
        """
        scores = []
        for point in points:
            self._history[point.step] = point
            score = self._score(point)
            scores.append((point.step, score))
            if score is not None:
                self._note_best(point.step, score)
                self._signal.update(score)
                self._best_so_far.update(score)
        return tuple(scores)

    def take(self, points: Sequence[StepMetrics]) -> Judgement:
        """Take a batch of new points (merged per step, in step order); return what they mean."""
        if not points:
            return Judgement((), None, (), None)
        best_before = self._best
        scores = []
        for point in points:
            old = self._history.get(point.step)
            self._history[point.step] = point if old is None else StepMetrics(point.step, {**old.metrics, **point.metrics})
            scores.append((point.step, self._score(point)))
        evals = [(step, score) for step, score in scores if score is not None]
        for step, score in evals:
            self._note_best(step, score)
        verdict = self._judge()
        if verdict is not None:
            # Report what judging point by point would have let through: the evals before the point at which the
            # verdict first fires.
            history = self.history
            new = min(point.step for point in points)
            found = collapse_walk(self._rules or [], history, next(i for i, p in enumerate(history) if p.step >= new))
            first = history[found[1]].step if found is not None else history[-1].step
            evals = [(step, score) for step, score in evals if step < first]
        reports = tuple(
            EvalReport(step, score, self._signal.update(score), self._best_so_far.update(score)) for step, score in evals
        )
        return Judgement(tuple(scores), self._best if self._best != best_before else None, reports, verdict, self._warn())

    def _score(self, point: StepMetrics) -> float | None:
        if self._objective is None:
            self._objective = resolve_objective(self._metric, [point], eval_sizes=self._eval_sizes)[0]
            if self._objective is not None:
                self._why = choose_objective(point.metrics, self._eval_sizes)[1]
        return point.get(self._objective) if self._objective else None

    def _warn(self) -> tuple[Verdict, ...]:
        """Return the warnings not given before (the earliest of each sign on the history so far)."""
        if self._collapse is None:
            return ()
        found = collect_warnings([*(self._rules or []), *self._signs], self.history)
        new = tuple(warning for warning in found if warning.rule not in self._warned)
        self._warned.update(warning.rule for warning in new)
        return new

    def _note_best(self, step: int, score: float) -> None:
        if not math.isfinite(score):
            return
        if self._best is None or (score > self._best[1] if self._mode == "max" else score < self._best[1]):
            self._best = (step, score)

    def _judge(self) -> Verdict | None:
        if self._collapse is None or self._objective is None:
            return None
        if self._rules is None:
            self._rules = build_rules(self._collapse, self._objective, self._mode, self._eval_sizes)  # type: ignore[arg-type]
        return first_verdict(self._rules, self.history)
