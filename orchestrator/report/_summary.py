"""One run's summary: best checkpoint, how it ended, when it collapsed, and how its training signals changed.

The input, `RunInput`, does not depend on where a run came from: `ablate analyze` builds it from log files, and
`ablate report` from the sweep store (with the stop reason and verdict the engine recorded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.collapse import Mode, Rule, Verdict, collect_warnings, end_verdict, first_verdict
from orchestrator.history import History, series
from orchestrator.store import StopReason

__all__ = [
    "ASHA_STOP",
    "COMPLETED",
    "SIGNALS",
    "Collapse",
    "RunInput",
    "RunSummary",
    "Timeline",
    "summarize_run",
]

COMPLETED = StopReason("completed")
"""The stop reason of a run that ran to its end."""

ASHA_STOP = StopReason("asha")
"""The stop reason of a run that ASHA stopped (it is censored at its stop step)."""

SIGNALS: dict[str, tuple[str, ...]] = {
    "pg_loss": ("actor/pg_loss",),
    "entropy": ("actor/entropy", "actor/entropy_loss"),
    "grad_norm": ("actor/grad_norm",),
    "response_length": ("response_length/mean",),
    "throughput": ("perf/throughput",),
    "mfu": ("perf/mfu/actor",),
}
"""The training signals compared before and after a collapse: each name's verl metrics, the first logged wins."""

DEAD_GRAD_NORM = 1e-3
"""A grad norm at or below this marks the dead state (as `DeadRule` judges it by default)."""


@dataclass(frozen=True)
class RunInput:
    """What the report needs of one run, wherever it came from.

    Attributes:
        run: The run's name (unique within a report).
        history: Its points in increasing step order.
        levels: Factor -> level label (empty when the run belongs to no factor).
        seed: Its seed, when known.
        stop_reason: How it ended, as recorded: `completed`, `asha`, `collapse:<rule>`, `failed`, ...; None when
            nothing was recorded (a log read from disk): the collapse rules then decide.
        stop_step: The step at which it was stopped, when recorded.
        verdict: The collapse verdict recorded when it was stopped; None to judge the history with the rules.
        checkpoint: Where its best checkpoint was kept, when known (a sweep's store records it).
    """

    run: str
    history: History
    levels: Mapping[str, str] = field(default_factory=dict)
    seed: int | None = None
    stop_reason: str | None = None
    stop_step: int | None = None
    verdict: Verdict | None = None
    checkpoint: str | None = None


@dataclass(frozen=True)
class Collapse:
    """When and why a run collapsed.

    Attributes:
        step: The onset: the first evaluation judged collapsed (for rules without one, the first step judged).
        rule: The rule that fired.
        reason: The rule's sentence.
        evidence: The values the rule used.
        fired_step: The step at which the rule fired (a live trial would have been stopped after it).
    """

    step: int
    rule: str
    reason: str
    evidence: Mapping[str, Any]
    fired_step: int

    @property
    def confirmed(self) -> bool:
        """False for a run that ended collapsed at its last evaluations, before a rule could confirm it."""
        return bool(self.evidence.get("confirmed", True))

    @property
    def label(self) -> str:
        """Return e.g. `score_drop`, or `score_drop, unconfirmed` for a run that ended collapsed unconfirmed."""
        return self.rule if self.confirmed else f"{self.rule}, unconfirmed"


@dataclass(frozen=True)
class Timeline:
    """The steps that tell a collapse's story; None where it does not apply.

    Attributes:
        best: The best evaluation's step.
        last_healthy_eval: The last evaluation before the onset.
        onset: The first evaluation judged collapsed.
        dead: The first step at or after the onset with a grad norm at or below 1e-3 (GRPO's dead state).
    """

    best: int | None
    last_healthy_eval: int | None
    onset: int | None
    dead: int | None


@dataclass(frozen=True)
class RunSummary:
    """One run, summarised for the report.

    Attributes:
        run: Its name.
        levels: Factor -> level label.
        seed: Its seed, when known.
        objective: The metric it is judged by (None when it logged none).
        best_step: The step of its best evaluation (None without evaluations).
        best_score: The best evaluation.
        final_step: Its last step.
        stop_reason: `completed`, `asha`, `collapse:<rule>`, ...
        stop_step: The step at which it ended or was stopped.
        collapse: When and why it collapsed, or None.
        metrics_at_best: Each training signal's mean over a window around the best step (before the onset).
        metrics_after: Each signal's mean over the steps from the onset on (empty without a collapse).
        timeline: Best, last healthy evaluation, onset, dead.
        n_evals: How many finite evaluations of the objective it logged.
        checkpoint: Where its best checkpoint was kept, when known.
        warnings: The leading signs that warned, the earliest warning of each, in step order (never stops).
    """

    run: str
    levels: Mapping[str, str]
    seed: int | None
    objective: str | None
    best_step: int | None
    best_score: float | None
    final_step: int | None
    stop_reason: str
    stop_step: int | None
    collapse: Collapse | None
    metrics_at_best: Mapping[str, float]
    metrics_after: Mapping[str, float]
    timeline: Timeline
    n_evals: int
    checkpoint: str | None = None
    warnings: tuple[Verdict, ...] = ()

    @property
    def collapsed(self) -> bool:
        """Return True when the run collapsed."""
        return self.collapse is not None

    @property
    def censored_by_asha(self) -> bool:
        """Return True when ASHA stopped the run before it collapsed."""
        return self.collapse is None and self.stop_reason == ASHA_STOP

    @property
    def survival_time(self) -> tuple[int, bool] | None:
        """Return (step, collapsed) for survival analysis, or None for a run without steps.

        A collapsed run's event time is its onset; a run stopped by ASHA is censored at its stop step; any other
        run that ended without collapsing is censored at its last step.
        """
        # A collapse: the event is the onset, however the run ended.
        if self.collapse is not None:
            return self.collapse.step, True
        # Stopped by ASHA: censored where it was stopped.
        if self.stop_reason == ASHA_STOP and self.stop_step is not None:
            return self.stop_step, False
        # Ended without collapsing: censored at its last step.
        if self.final_step is None:
            return None
        return self.final_step, False

    def change_pct(self, metric: str) -> float | None:
        """Return the % change of `metric` from the window around the best step to the steps after the onset."""
        before, after = self.metrics_at_best.get(metric), self.metrics_after.get(metric)
        # Either side missing, or a zero base: no percentage.
        if before is None or after is None or before == 0:
            return None
        return 100.0 * (after - before) / abs(before)

    def to_json(self) -> dict[str, Any]:
        """Return `{"run", "best_step", "best_score", "final_step", "collapse", "metrics_at_best", "metrics_after"}`.

        `collapse` is `{"step", "rule", "confirmed", "evidence"}` (step = the onset) or None. Non-finite numbers become None.
        """
        collapse = None
        if self.collapse is not None:
            collapse = {
                "step": self.collapse.step,
                "rule": self.collapse.rule,
                "confirmed": self.collapse.confirmed,
                "evidence": self.collapse.evidence,
            }
        return jsonable(
            {
                "run": self.run,
                "best_step": self.best_step,
                "best_score": self.best_score,
                "final_step": self.final_step,
                "collapse": collapse,
                "metrics_at_best": dict(self.metrics_at_best),
                "metrics_after": dict(self.metrics_after),
            }
        )


def jsonable(value: Any) -> Any:
    """Return `value` with NaN and inf replaced by None and tuples by lists, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def summarize_run(
    run: RunInput,
    objective: str | None,
    mode: Mode,
    rules: Sequence[Rule] = (),
    *,
    signs: Sequence[Any] = (),
    window_steps: int = 5,
) -> RunSummary:
    """Summarise one run.

    Args:
        run: The run.
        objective: The metric it is judged by; None when it logged none (no best, no score rules).
        mode: `max` if a higher objective is better, else `min`.
        rules: The collapse rules that judge the history when no verdict was recorded. A run that ran to its end
            (or a log) is judged as finished (`end_verdict`): one whose last evaluations dropped too late for a
            rule to confirm it ended collapsed, unconfirmed.
        signs: The leading signs (`orchestrator.collapse.build_signs`); with the rules' own warnings they give
            `warnings`.
        window_steps: The half-width, in steps, of the window around the best step.
    """
    history = run.history
    evals = series(history, objective, finite=True) if objective else []
    best_step, best_score = _best(evals, mode)
    if run.verdict is not None:
        verdict = run.verdict
    elif run.stop_reason is None or run.stop_reason == COMPLETED:
        verdict = end_verdict(rules, history)
    else:
        verdict = first_verdict(rules, history)
    collapse = _collapse(verdict)
    final_step = history[-1].step if history else None
    onset = collapse.step if collapse else None
    return RunSummary(
        run=run.run,
        levels=dict(run.levels),
        seed=run.seed,
        objective=objective,
        best_step=best_step,
        best_score=best_score,
        final_step=final_step,
        stop_reason=_stop_reason(run, collapse),
        stop_step=run.stop_step if run.stop_step is not None else final_step,
        collapse=collapse,
        metrics_at_best=_window_means(history, best_step, window_steps, onset),
        metrics_after=_after_means(history, onset),
        timeline=_timeline(history, evals, best_step, onset),
        n_evals=len(evals),
        checkpoint=run.checkpoint,
        warnings=tuple(collect_warnings([*rules, *signs], history)),
    )


def _best(evals: Sequence[tuple[int, float]], mode: Mode) -> tuple[int | None, float | None]:
    """Return the first step with the best finite evaluation, and its value."""
    # No evaluation: no best.
    if not evals:
        return None, None
    pick = max if mode == "max" else min
    best = pick(value for _, value in evals)
    step = next(step for step, value in evals if value == best)
    return step, best


def _collapse(verdict: Verdict | None) -> Collapse | None:
    if verdict is None:
        return None
    evidence = dict(verdict.evidence)
    onset = evidence.get("onset_eval_step")
    if onset is None:
        onset = evidence.get("onset_step", verdict.step)
    return Collapse(int(onset), verdict.rule, verdict.reason, evidence, verdict.step)


def _stop_reason(run: RunInput, collapse: Collapse | None) -> str:
    # Recorded by whoever ran it: the engine knows why it stopped a trial.
    if run.stop_reason is not None:
        return run.stop_reason
    # A log read from disk: the rules say whether it collapsed.
    if collapse is not None:
        return StopReason.collapse(collapse.rule)
    return COMPLETED


def _signal_metric(history: History, names: Sequence[str]) -> str | None:
    """Return the first of `names` the run logged, or None."""
    logged = {name for point in history for name in point.metrics}
    return next((name for name in names if name in logged), None)


def _mean_over(history: History, metric: str, low: float, high: float) -> float | None:
    values = [v for step, v in series(history, metric, finite=True) if low <= step < high]
    return sum(values) / len(values) if values else None


def _window_means(history: History, best_step: int | None, window_steps: int, onset: int | None) -> dict[str, float]:
    """Return each signal's mean over [best - window, best + window], stopping before the onset."""
    # No best step: no window.
    if best_step is None:
        return {}
    high = best_step + window_steps + 1
    if onset is not None:
        high = min(high, max(onset, best_step + 1))
    return _means(history, best_step - window_steps, high)


def _after_means(history: History, onset: int | None) -> dict[str, float]:
    """Return each signal's mean over the steps from the onset on."""
    # No collapse: nothing after it.
    if onset is None:
        return {}
    return _means(history, onset, math.inf)


def _means(history: History, low: float, high: float) -> dict[str, float]:
    means: dict[str, float] = {}
    for names in SIGNALS.values():
        metric = _signal_metric(history, names)
        mean = _mean_over(history, metric, low, high) if metric else None
        if metric and mean is not None:
            means[metric] = mean
    return means


def _timeline(
    history: History, evals: Sequence[tuple[int, float]], best_step: int | None, onset: int | None
) -> Timeline:
    # No collapse: only the best step.
    if onset is None:
        return Timeline(best_step, None, None, None)
    healthy = [step for step, _ in evals if step < onset]
    norms = series(history, "actor/grad_norm", finite=True)
    dead = next((step for step, norm in norms if step >= onset and norm <= DEAD_GRAD_NORM), None)
    return Timeline(best_step, healthy[-1] if healthy else None, onset, dead)
