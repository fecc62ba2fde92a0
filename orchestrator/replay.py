"""Replay recorded metric histories through a spec's pruning, as if the trials were live.

`ablate replay` answers the question users ask after a sweep: what would these pruning settings have saved, and
what would they have cost? Each recorded trial is fed to the pruning point by point:

- The collapse rules (`pruning.collapse`), the objective and the signal reported to the scheduler come from the
  live trial's own judge (`orchestrator.judge.TrialJudge`), fed one point at a time. The live trial feeds it the
  batches of points it reads; a rule returns its earliest firing step, and the judge reports only the evals before
  the point at which a verdict first fires, so both give the same verdict and reports (tested).
- Each rule's record on the replayed trials (`orchestrator.calibration`): the collapses it catches, how late, and
  its false stops, against each curve's own ground truth; and each leading sign's lead time and false alarms.
- ASHA (`pruning.asha`) is replayed across trials in the recorded arrival order with a given (or the recorded)
  concurrency, on the same signal the engine reports (best so far or EMA of the objective, at eval steps), with
  `AshaBrackets`, our re-implementation of Ray Tune's `AsyncHyperBandScheduler` rung logic, or, for
  `by: seed_mean`, with `orchestrator.pruners.SeedMeanHalving`, the very object the live scheduler drives.

Nothing here imports Ray, starts a trainer or writes to a store.
"""

from __future__ import annotations

import heapq
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.calibration import Case, RuleCalibration, SignCalibration, calibrate_rules, calibrate_signs, curve_onset
from orchestrator.collapse import CollapseConfig, Verdict, build_rules, first_verdict
from orchestrator.errors import AblateError
from orchestrator.evalsets import eval_source
from orchestrator.history import StepMetrics, series
from orchestrator.judge import TrialJudge
from orchestrator.pruners import SeedMeanHalving
from orchestrator.spec import SweepSpec
from orchestrator.store import StopReason

__all__ = [
    "AshaBrackets",
    "RecordedTrial",
    "ReplayResult",
    "TrialReplay",
    "load_logs",
    "load_sweep",
    "replay",
]

CONTINUE = "CONTINUE"
STOP = "STOP"


# ----------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RecordedTrial:
    """One recorded trial: its history and, for a sweep directory, how the live run ended.

    Attributes:
        name: The trial's name (a log's run name).
        point: The configuration it trained (trials of one point differ only in their seed); a log's run name.
        seed: Its seed (None for a log).
        points: Its history, one point per step in increasing step order.
        started: Unix time of its first `started` event (None for a log): the arrival order.
        live_reason: The live stop reason (`completed`, `collapse:<rule>`, `asha`, `failed`), if recorded.
        live_step: The live stop step, if recorded.
    """

    name: str
    point: str
    seed: int | None
    points: tuple[StepMetrics, ...]
    started: float | None = None
    live_reason: str | None = None
    live_step: int | None = None


def load_sweep(sweep_dir: Path) -> tuple[list[RecordedTrial], int | None]:
    """Read every trial of a sweep directory's store, in arrival order, and the recorded concurrency.

    Trials are sorted by their first `started` event (trials never started come last, in store order). The
    recorded concurrency is the largest number of trials whose [first start, last end event] spans overlap.

    Raises:
        AblateError: If the directory has no sweep store or the store holds no sweep.
    """
    from orchestrator.errors import StoreError
    from orchestrator.store import SQLiteStore
    from orchestrator.sweepdir import SweepDir

    db = SweepDir(sweep_dir).require().db
    try:
        store = SQLiteStore(db)
    except StoreError as exc:
        raise AblateError(str(exc)) from None
    try:
        sweeps = store.list_sweeps()
        if not sweeps:
            raise AblateError(f"{db}: holds no sweep")
        trials: list[RecordedTrial] = []
        spans: list[tuple[float, float]] = []
        for sweep in sweeps:
            for record in store.list_trials(sweep.id):
                events = store.list_events(record.id)
                starts = [e.time for e in events if e.kind == "started"]
                ends = [e.time for e in events if e.kind in ("completed", "stopped", "failed", "interrupted")]
                started = min(starts) if starts else None
                if started is not None:
                    spans.append((started, max(ends) if ends else math.inf))
                trials.append(
                    RecordedTrial(
                        name=record.name,
                        point=record.point,
                        seed=record.seed,
                        points=tuple(store.get_history(record.id)),
                        started=started,
                        live_reason=record.stop_reason,
                        live_step=record.stop_step,
                    )
                )
    finally:
        store.close()
    order = sorted(range(len(trials)), key=lambda i: (trials[i].started is None, trials[i].started or 0.0, i))
    return [trials[i] for i in order], _max_overlap(spans)


def _max_overlap(spans: Sequence[tuple[float, float]]) -> int | None:
    if not spans:
        return None
    # Sweep line over the spans; at equal times an end is counted before a start (a freed slot is reused).
    marks = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda m: (m[0], m[1]))
    running = best = 0
    for _, delta in marks:
        running += delta
        best = max(best, running)
    return best


def load_logs(paths: Iterable[Path]) -> list[RecordedTrial]:
    """Read run logs (verl JSONL, console, TensorBoard, wandb CSV) as trials, in the order given.

    Each log is one trial named after its run; it is its own configuration (no factor levels, no seed).

    Raises:
        AblateError: If a path is missing, unreadable, or holds no metrics, or two logs share a run name.
    """
    from orchestrator.readers import read_run

    runs = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise AblateError(f"{path}: no such file or folder")
        try:
            run = read_run(path)
        except (OSError, ValueError) as exc:
            raise AblateError(f"{path}: {exc}") from None
        if not run.points:
            raise AblateError(f"{path}: no metrics found")
        runs.append((path, run))
    # Logs that share a run name (e.g. every trial's `metrics.0.jsonl`) are named after their folders too.
    names = [run.name for _, run in runs]
    trials: list[RecordedTrial] = []
    for path, run in runs:
        name = run.name if names.count(run.name) == 1 else f"{path.parent.name}/{run.name}"
        if any(t.name == name for t in trials):
            raise AblateError(f"{path}: a second log of run `{name}`; give each run once")
        trials.append(RecordedTrial(name=name, point=name, seed=None, points=run.points))
    return trials


# ------------------------------------------------------------------------------------------- collapse rules


# ---------------------------------------------------------------------------------------------------- ASHA


class _Bracket:
    """One bracket of asynchronous successive halving (our re-implementation of Ray Tune's `_Bracket`).

    What we matched, from ray/tune/schedulers/async_hyperband.py (Ray 2.x):

    - Rungs: `int(log(max_t / min_t) / log(rf) - s + 1)` of them, at `min_t * rf ** (k + s)`, scanned from the
      highest milestone down.
    - A result at time `t` finds the highest rung with milestone <= `t` that the trial is not yet recorded in,
      skipping (continuing below) rungs it is recorded in; at that rung the cutoff is
      `np.nanpercentile(recorded values, (1 - 1 / rf) * 100)` of the values recorded there before it, the trial
      stops if its value is below the cutoff (values are sign-flipped for `min`), and its value is recorded.
      An empty rung (the first arrival) has no cutoff: the trial continues. NaN values are ignored by the
      percentile and never compare below it, so a NaN is never stopped.
    - `stop_last_trials=True` (Tune's default, as the engine uses it).
    """

    def __init__(self, min_t: int, max_t: int, reduction_factor: float, s: int) -> None:
        self.rf = reduction_factor
        n_rungs = int(np.log(max_t / min_t) / np.log(reduction_factor) - s + 1)
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (min_t * reduction_factor ** (k + s), {}) for k in reversed(range(n_rungs))
        ]

    def cutoff(self, recorded: Mapping[str, float]) -> float | None:
        """Return the rung's cutoff, or None for an empty rung."""
        if not recorded:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN rung: the cutoff is NaN, nothing stops
            return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100))

    def on_result(self, trial: str, time: float, reward: float) -> tuple[str, dict[str, Any] | None]:
        """Return CONTINUE or STOP for one result, and the rung it was judged at (milestone, cutoff, value)."""
        for milestone, recorded in self.rungs:
            if time < milestone or trial in recorded:
                continue
            cutoff = self.cutoff(recorded)
            action = STOP if cutoff is not None and reward < cutoff else CONTINUE
            recorded[trial] = reward
            return action, {"rung": milestone, "cutoff": cutoff, "value": reward, "n_recorded": len(recorded) - 1}
        return CONTINUE, None


class AshaBrackets:
    """Ray Tune's `AsyncHyperBandScheduler` decisions, re-implemented without Ray (see `_Bracket`).

    Args:
        grace_steps: Tune's `grace_period` (min_t).
        max_t: Tune's `max_t`; the engine passes `max_steps + 1` so that no trial is stopped for reaching the end.
        reduction_factor: Tune's `reduction_factor`.
        brackets: Tune's `brackets`. With several, Tune picks a trial's bracket at random (softmax over the
            brackets' rung counts, numpy's global generator); here a generator seeded with `seed` does, so a
            replay is repeatable but may not pick the live run's brackets.
        mode: `max` or `min` (Tune's `metric_op`: values are negated for `min`).
        seed: The bracket choice's seed.
    """

    def __init__(
        self, grace_steps: int, max_t: int, reduction_factor: float, brackets: int, mode: str, *, seed: int = 0
    ) -> None:
        self._max_t = max_t
        self._op = 1.0 if mode == "max" else -1.0
        self._brackets = [_Bracket(grace_steps, max_t, reduction_factor, s) for s in range(brackets)]
        self._rng = np.random.RandomState(seed)
        self._of: dict[str, _Bracket] = {}

    def add(self, trial: str) -> None:
        """Assign a trial to a bracket (Tune's `on_trial_add`)."""
        sizes = np.array([len(b.rungs) for b in self._brackets])
        probs = np.e ** (sizes - sizes.max())
        index = 0 if len(self._brackets) == 1 else int(self._rng.choice(len(self._brackets), p=probs / probs.sum()))
        self._of[trial] = self._brackets[index]

    def on_result(self, trial: str, step: int, signal: float | None) -> tuple[str, dict[str, Any] | None]:
        """Return CONTINUE or STOP for a reported result (Tune's `on_trial_result`) and what it was judged on.

        A result without the signal (no finite objective yet) continues and records nothing, as in Tune.
        """
        if signal is None:
            return CONTINUE, None
        if step >= self._max_t:
            return STOP, {"rung": self._max_t, "cutoff": None, "value": signal, "n_recorded": 0}
        action, rung = self._of[trial].on_result(trial, step, self._op * signal)
        if rung is not None:
            rung["value"] = signal
            rung["cutoff"] = None if rung["cutoff"] is None else self._op * rung["cutoff"]
        return action, rung

    def on_complete(self, trial: str, step: int | None, signal: float | None) -> None:
        """Record a trial's last result once more as it ends (Tune's `on_trial_complete`); the action is unused."""
        if signal is not None and step is not None:
            self._of[trial].on_result(trial, step, self._op * signal)


class _SeedMeanReplay:
    """`SeedMeanHalving` behind `AshaBrackets`'s interface (configurations are the trials' points)."""

    def __init__(self, halving: SeedMeanHalving) -> None:
        self._halving = halving

    def add(self, trial: str) -> None:
        """Trials are registered with their configuration at construction."""

    def on_result(self, trial: str, step: int, signal: float | None) -> tuple[str, dict[str, Any] | None]:
        """Return CONTINUE or STOP for a reported result, and the evidence of a stop."""
        return self._halving.on_result(trial, step, signal)

    def on_complete(self, trial: str, step: int | None, signal: float | None) -> None:
        """Record that a trial ended (with or without a signal)."""
        self._halving.on_complete(trial, signal)


# ---------------------------------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class TrialReplay:
    """Where and why one trial would have stopped under the replayed pruning.

    Attributes:
        name, point, seed: As in `RecordedTrial`.
        stop_step: The step after which it would have stopped (its last recorded step if it ran through).
        reason: `collapse:<rule>`, `asha` or `completed`.
        evidence: The collapse verdict's reason and evidence, or ASHA's rung, cutoff and value.
        steps_used: Steps it would have trained (= stop_step).
        budget: Its full budget (`budget.max_steps`).
        truncated: Its recorded history ends before the budget (the live run stopped early), so a replay that
            lets it run sees only what was recorded.
        best_score: Its best objective up to `stop_step`.
        full_best_score: Its best objective over the whole recorded history.
        healthy_at_end: No collapse rule fires on its whole recorded history.
        collapse_rule, collapse_step: The replayed collapse verdict (even if ASHA stopped it first), if any.
        live_reason, live_step: The recorded live stop (sweep directory only).
        live_match: For a sweep directory and a spec with collapse rules: whether the replayed collapse
            decision matches the live one.
    """

    name: str
    point: str
    seed: int | None
    stop_step: int | None
    reason: str
    evidence: dict[str, Any]
    steps_used: int
    budget: int
    truncated: bool
    best_score: float | None
    full_best_score: float | None
    healthy_at_end: bool
    collapse_rule: str | None = None
    collapse_step: int | None = None
    live_reason: str | None = None
    live_step: int | None = None
    live_match: bool | None = None


@dataclass(frozen=True)
class ReplayResult:
    """A whole replay: per trial, totals, the best configuration with and without pruning, and what was lost.

    Attributes:
        trials: One `TrialReplay` per trial, in arrival order.
        concurrency: The number of trials run at once in the ASHA replay (None: all at once, or no ASHA).
        steps_used: The total steps trained under the pruning.
        budget: The total full budget (trials x max_steps).
        best_config, best_config_score: The best configuration by mean best score over its seeds, with each
            trial's score taken up to its replayed stop.
        unpruned_best_config, unpruned_best_score: The same over the whole recorded histories.
        lost: Trials stopped (by collapse or ASHA) that were healthy at the end of their recorded history.
        mismatches: For a sweep directory, the number of trials whose replayed collapse decision differs from
            the live one (None for logs).
        rules: Per collapse rule, and for all of them together, its record on these trials against each curve's
            own ground truth (`orchestrator.calibration.curve_onset`): collapses caught in time, late or missed,
            latency in evaluations, false stops.
        signs: Per leading sign: warnings before and after the onset, lead in steps, false alarms.
    """

    trials: list[TrialReplay]
    concurrency: int | None
    steps_used: int
    budget: int
    best_config: str | None
    best_config_score: float | None
    unpruned_best_config: str | None
    unpruned_best_score: float | None
    lost: list[str] = field(default_factory=list)
    mismatches: int | None = None
    rules: list[RuleCalibration] = field(default_factory=list)
    signs: list[SignCalibration] = field(default_factory=list)

    @property
    def used_pct(self) -> float:
        """Return the steps used as a percentage of the full budget."""
        return 100.0 * self.steps_used / self.budget if self.budget else 0.0

    @property
    def best_kept(self) -> bool:
        """Return whether the pruned sweep still finds the configuration the unpruned one finds."""
        return self.best_config == self.unpruned_best_config

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form (for `--json`)."""
        data = asdict(self)
        data["used_pct"] = round(self.used_pct, 2)
        data["best_kept"] = self.best_kept
        return data


@dataclass
class _Plan:
    """One trial's replay inputs: the collapse outcome and the reports ASHA would have seen before it."""

    index: int
    trial: RecordedTrial
    objective: str | None
    verdict: Verdict | None
    end_step: int | None  # the collapse step, or the last recorded step
    reports: list[tuple[int, float | None]]


def replay(
    spec: SweepSpec, trials: Sequence[RecordedTrial], *, concurrency: int | None = None, seed: int = 0
) -> ReplayResult:
    """Replay recorded trials through `spec.pruning` as if live; pure and deterministic.

    Args:
        spec: The spec whose pruning, objective and budget are replayed.
        trials: The recorded trials, in arrival order.
        concurrency: How many trials ran at once for ASHA (None: all at once). Trials start in the given order,
            each as a slot frees; all trials advance one step per time unit, so a trial that started at time T
            reports its step s at T + s (ties: earlier arrivals first).
        seed: Seeds the ASHA bracket choice when there are several brackets.

    Returns:
        The per-trial stops and the totals.
    """
    if concurrency is not None and concurrency < 1:
        raise AblateError(f"`concurrency` must be >= 1 (got {concurrency})")
    _check_eval_sizes(spec, trials)
    mode = spec.objective.mode
    collapse = spec.pruning.collapse
    judge = collapse if collapse is not None else CollapseConfig()
    asha = spec.pruning.asha
    plans: list[_Plan] = []
    healthy: dict[int, bool] = {}
    for index, trial in enumerate(trials):
        points = trial.points
        verdict, reports, objective = _judge_as_live(spec, points)
        # Healthy at the end: no collapse rule (the spec's, or the defaults) fires on the whole recorded history.
        rules = build_rules(judge, objective, mode, spec.objective.eval_sizes) if objective is not None else []
        healthy[index] = first_verdict(rules, points) is None
        end_step = verdict.step if verdict is not None else (points[-1].step if points else None)
        plans.append(_Plan(index, trial, objective, verdict, end_step, reports if asha is not None else []))
    asha_stops = _replay_asha(spec, plans, concurrency, seed) if asha is not None else {}
    out = [_trial_replay(spec, plan, asha_stops.get(plan.index), healthy[plan.index]) for plan in plans]
    best, best_score = _best_config(out, mode, pruned=True)
    full, full_score = _best_config(out, mode, pruned=False)
    lost = [t.name for t in out if t.reason != "completed" and t.healthy_at_end]
    has_live = collapse is not None and any(t.live_reason is not None for t in trials)
    cases = [
        Case(plan.trial.name, plan.trial.points, plan.objective, spec.objective.eval_sizes,
             curve_onset(series(plan.trial.points, plan.objective, finite=True), mode))
        for plan in plans
        if plan.objective is not None
    ]
    return ReplayResult(
        trials=out,
        concurrency=concurrency if asha is not None else None,
        steps_used=sum(t.steps_used for t in out),
        budget=sum(t.budget for t in out),
        best_config=best,
        best_config_score=best_score,
        unpruned_best_config=full,
        unpruned_best_score=full_score,
        lost=lost,
        mismatches=sum(1 for t in out if t.live_match is False) if has_live else None,
        rules=calibrate_rules(cases, judge, mode),
        signs=calibrate_signs(cases, mode),
    )


def _check_eval_sizes(spec: SweepSpec, trials: Sequence[RecordedTrial]) -> None:
    """Refuse `objective.eval_sizes` naming a data source that no recorded trial logs."""
    if not spec.objective.eval_sizes:
        return
    logged = {eval_source(name) for trial in trials for point in trial.points for name in point.metrics}
    for source in spec.objective.eval_sizes:
        if source not in logged:
            known = ", ".join(sorted(s for s in logged if s is not None)) or "none"
            raise AblateError(f"objective.eval_sizes: no trial logs the data source `{source}` (logged: {known})")


def _judge_as_live(spec: SweepSpec, points: Sequence[StepMetrics]) -> tuple[Verdict | None, list[tuple[int, float | None]], str | None]:
    """Judge a recorded history with the live trial's judge, one point at a time.

    Returns:
        The collapse verdict (None if no rule fires), the (step, signal) reports the scheduler would have been given
        (those before the point at which the verdict fires), and the objective.
    """
    asha = spec.pruning.asha
    judge = TrialJudge(
        spec.objective.metric,
        spec.objective.mode,
        spec.pruning.collapse,
        signal=asha.signal if asha is not None else "best",
        ema_alpha=asha.ema_alpha if asha is not None else 0.5,
        eval_sizes=spec.objective.eval_sizes,
    )
    reports: list[tuple[int, float | None]] = []
    for point in points:
        judgement = judge.take([point])
        reports += [(report.step, report.signal) for report in judgement.reports]
        if judgement.verdict is not None:
            return judgement.verdict, reports, judge.objective
    return None, reports, judge.objective


def _replay_asha(
    spec: SweepSpec, plans: Sequence[_Plan], concurrency: int | None, seed: int
) -> dict[int, tuple[int, dict[str, Any]]]:
    """Run the trials' reports through ASHA in arrival order; return {trial index: (stop step, rung)}."""
    asha = spec.pruning.asha
    assert asha is not None
    scheduler: AshaBrackets | _SeedMeanReplay
    if asha.by == "seed_mean":
        groups = {str(plan.index): plan.trial.point for plan in plans}
        scheduler = _SeedMeanReplay(
            SeedMeanHalving(asha.grace_steps, spec.budget.max_steps + 1, asha.reduction_factor, spec.objective.mode, groups)
        )
    else:
        scheduler = AshaBrackets(
            asha.grace_steps, spec.budget.max_steps + 1, asha.reduction_factor, asha.brackets, spec.objective.mode, seed=seed
        )
    for plan in plans:  # Tune adds every grid trial before any starts
        scheduler.add(str(plan.index))
    slots = concurrency or max(len(plans), 1)
    queue = list(plans)
    heap: list[tuple[float, int, int]] = []  # (time, arrival index, report index; len(reports) = the trial's end)
    starts: dict[int, float] = {}
    stops: dict[int, tuple[int, dict[str, Any]]] = {}

    def start(now: float) -> None:
        plan = queue.pop(0)
        starts[plan.index] = now
        _push(plan, 0, now)

    def _push(plan: _Plan, k: int, origin: float) -> None:
        when = origin + (plan.reports[k][0] if k < len(plan.reports) else (plan.end_step or 0))
        heapq.heappush(heap, (when, plan.index, k))

    def finish(plan: _Plan, k: int, now: float) -> None:
        last = plan.reports[k - 1] if k > 0 else None
        # Every end is recorded (a seed that ended without a signal no longer holds its configuration back).
        scheduler.on_complete(str(plan.index), last[0] if last else None, last[1] if last else None)
        if queue:
            start(now)

    while queue and len(starts) < slots:
        start(0.0)
    by_index = {plan.index: plan for plan in plans}
    while heap:
        now, index, k = heapq.heappop(heap)
        plan = by_index[index]
        if k == len(plan.reports):
            finish(plan, k, now)
            continue
        step, signal = plan.reports[k]
        action, rung = scheduler.on_result(str(index), step, signal)
        if action == STOP:
            stops[index] = (step, rung or {})
            finish(plan, k + 1, now)
            continue
        _push(plan, k + 1, starts[index])
    return stops


def _trial_replay(spec: SweepSpec, plan: _Plan, asha_stop: tuple[int, dict[str, Any]] | None, healthy: bool) -> TrialReplay:
    trial, verdict = plan.trial, plan.verdict
    budget = spec.budget.max_steps
    if asha_stop is not None:
        stop_step, reason, evidence = asha_stop[0], "asha", dict(asha_stop[1])
    elif verdict is not None:
        stop_step, reason = verdict.step, StopReason.collapse(verdict.rule)
        evidence = {"reason": verdict.reason, **dict(verdict.evidence)}
    else:
        stop_step, reason, evidence = plan.end_step, "completed", {}
    last = trial.points[-1].step if trial.points else 0
    steps_used = min(stop_step or 0, budget)
    live_match = None
    if trial.live_reason is not None and spec.pruning.collapse is not None:
        live_match = _matches_live(trial, verdict)
    return TrialReplay(
        name=trial.name,
        point=trial.point,
        seed=trial.seed,
        stop_step=stop_step,
        reason=reason,
        evidence=evidence,
        steps_used=steps_used,
        budget=budget,
        truncated=last < budget,
        best_score=_best(trial.points, plan.objective, spec.objective.mode, upto=stop_step),
        full_best_score=_best(trial.points, plan.objective, spec.objective.mode, upto=None),
        healthy_at_end=healthy,
        collapse_rule=None if verdict is None else verdict.rule,
        collapse_step=None if verdict is None else verdict.step,
        live_reason=trial.live_reason,
        live_step=trial.live_step,
        live_match=live_match,
    )


def _matches_live(trial: RecordedTrial, verdict: Verdict | None) -> bool:
    """Whether the replayed collapse decision is the live one: same rule and step, or neither collapsed.

    A live run stopped otherwise (ASHA, a failure) at step s matches a replayed collapse only after s: its
    recorded history ends near s, so the live rules never saw that far.
    """
    live = StopReason.parse(trial.live_reason)
    if live is not None and live.is_collapse:
        return verdict is not None and live.rule == verdict.rule and trial.live_step == verdict.step
    if verdict is None:
        return True
    return live != "completed" and trial.live_step is not None and verdict.step > trial.live_step


def _best(points: Sequence[StepMetrics], objective: str | None, mode: str, *, upto: int | None) -> float | None:
    if objective is None:
        return None
    values = [
        v
        for p in points
        if (upto is None or p.step <= upto) and (v := p.get(objective)) is not None and math.isfinite(v)
    ]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def _best_config(trials: Sequence[TrialReplay], mode: str, *, pruned: bool) -> tuple[str | None, float | None]:
    """Return the configuration with the best mean (over its seeds) of best scores; a seed without one is skipped."""
    by_point: dict[str, list[float]] = {}
    for t in trials:
        score = t.best_score if pruned else t.full_best_score
        if score is not None:
            by_point.setdefault(t.point, []).append(score)
    if not by_point:
        return None, None
    means = {point: sum(v) / len(v) for point, v in by_point.items()}
    # Ties go to the configuration that comes first by name, so that the answer is deterministic.
    pick = sorted(means, key=lambda p: (-means[p] if mode == "max" else means[p], p))[0]
    return pick, means[pick]
