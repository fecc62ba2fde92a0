"""Rule calibration: per collapse rule and per leading sign, how many collapses it catches, how late, and how often
it fires on runs that never collapse.

Used by `ablate replay` (on the trials it replays, against the curve's own ground truth) and by
benchmarks/calibration.py (on the miniature, the real run bank's two halves and a binomial simulation).

Every rule is pure, so judging a whole history gives the verdict a live trial would have reached at that step.
Latency is counted in evaluations after the onset (0: stopped at the onset's evaluation). "In time" means stopped
at most one evaluation after the onset (a stop before the onset counts, and is counted apart). A run that ends
collapsed before a rule could confirm it is "flagged at its end" when `end_verdict` marks it and its last
evaluation is at most one after the onset.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.collapse import CollapseConfig, EntropyRule, Mode, Verdict, build_rules, build_signs, end_verdict, first_verdict
from orchestrator.history import StepMetrics, series

__all__ = [
    "COLLAPSE_FRACTION",
    "ONSET_FRACTION",
    "Case",
    "RuleCalibration",
    "SignCalibration",
    "calibrate_rules",
    "calibrate_signs",
    "curve_onset",
]

COLLAPSE_FRACTION = 0.5
"""A curve collapses if its score falls below this fraction of its best after the best and stays there."""

ONSET_FRACTION = 0.9
"""Its onset is the first evaluation after the best from which the score stays below this fraction of its best."""

ALL_RULES = "all rules (live, OR)"


def curve_onset(evals: Sequence[tuple[int, float]], mode: Mode = "max") -> int | None:
    """Return the collapse onset of a validation curve by its own shape, or None if it never collapses.

    The ground truth that needs no label: a curve collapses if its score falls below `COLLAPSE_FRACTION` of its
    best after the best and stays there to the end; its onset is the first evaluation after the best from which
    the score stays below `ONSET_FRACTION` of its best. Defined for positive scores with `mode="max"`.

    Example:
        >>> curve_onset([(10, 2.72), (20, 2.79), (30, 2.73), (40, 2.26), (50, 1.69), (60, 1.30), (70, 1.16)])
        40
    """
    if mode != "max" or len(evals) < 2:
        return None
    best_index = max(range(len(evals)), key=lambda i: evals[i][1])
    best = evals[best_index][1]
    if best <= 0 or evals[-1][1] >= COLLAPSE_FRACTION * best:
        return None
    onset = None
    for step, value in reversed(evals[best_index + 1 :]):
        if value >= ONSET_FRACTION * best:
            break
        onset = step
    return onset


@dataclass(frozen=True)
class Case:
    """One run with its ground truth.

    Attributes:
        name: The run's name.
        points: Its history.
        objective: The metric it is judged by.
        eval_sizes: Data source -> problems (as `objective.eval_sizes`).
        onset: The step of its collapse onset's evaluation; None for a run that never collapses.
    """

    name: str
    points: Sequence[StepMetrics]
    objective: str
    eval_sizes: Mapping[str, int] = field(default_factory=dict)
    onset: int | None = None

    @property
    def eval_steps(self) -> list[int]:
        """The steps of its finite evaluations."""
        return [step for step, _ in series(self.points, self.objective, finite=True)]


@dataclass
class RuleCalibration:
    """One rule's record on a set of runs (see the module's docstring for the terms)."""

    rule: str
    collapsing: int = 0
    healthy: int = 0
    in_time: int = 0
    before_onset: int = 0
    late: int = 0
    flagged_at_end: int = 0
    missed: int = 0
    false_stops: int = 0
    false_end_flags: int = 0
    latencies: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return asdict(self)


@dataclass
class SignCalibration:
    """One leading sign's record: warnings before and after the onset, and false alarms."""

    sign: str
    collapsing_logged: int = 0
    healthy_logged: int = 0
    before: int = 0
    after: int = 0
    never: int = 0
    false_alarms: int = 0
    leads: list[int] = field(default_factory=list)
    """Steps from the warning to the onset, for the warnings at or before it."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return asdict(self)


def _index(steps: Sequence[int], step: int) -> int:
    """The index of the last evaluation at or before `step` (-1 if none)."""
    return sum(1 for s in steps if s <= step) - 1


def tally(
    name: str, cases: Sequence[Case], check: Callable[[Case], Verdict | None], at_end: Callable[[Case], Verdict | None] | None
) -> RuleCalibration:
    """Return one rule's record: `check` gives a case's live verdict, `at_end` its verdict as a finished run."""
    record = RuleCalibration(name)
    for case in cases:
        verdict = check(case)
        end = at_end(case) if at_end is not None and verdict is None else None
        steps = case.eval_steps
        if case.onset is None:
            record.healthy += 1
            record.false_stops += verdict is not None
            record.false_end_flags += end is not None
            continue
        record.collapsing += 1
        onset_index = steps.index(case.onset) if case.onset in steps else _index(steps, case.onset)
        if verdict is not None:
            latency = _index(steps, verdict.step) - onset_index
            record.latencies.append(latency)
            record.before_onset += latency < 0
            record.in_time += latency <= 1
            record.late += latency > 1
        elif end is not None and len(steps) - 1 - onset_index <= 1:
            record.flagged_at_end += 1
        else:
            record.missed += 1
    return record


def calibrate_rules(cases: Sequence[Case], config: CollapseConfig | None = None, mode: Mode = "max") -> list[RuleCalibration]:
    """Return the record of each enabled rule alone, then of all of them as a live trial judges (the OR)."""
    config = config if config is not None else CollapseConfig()
    if not cases:
        return []
    built = {id(case): build_rules(config, case.objective, mode, case.eval_sizes) for case in cases}
    names = [rule.name for rule in built[id(cases[0])]]
    records = []
    for position, name in enumerate(names):
        def check(case: Case, position: int = position) -> Verdict | None:
            return built[id(case)][position].check(case.points)

        def at_end(case: Case, position: int = position) -> Verdict | None:
            rule = built[id(case)][position]
            return rule.at_end(case.points) if hasattr(rule, "at_end") else None

        records.append(tally(name, cases, check, at_end))
    records.append(
        tally(
            ALL_RULES,
            cases,
            lambda c: first_verdict(built[id(c)], c.points),
            lambda c: end_verdict(built[id(c)], c.points),
        )
    )
    return records


def calibrate_signs(cases: Sequence[Case], mode: Mode = "max") -> list[SignCalibration]:
    """Return each leading sign's record (and `entropy`, the entropy rule's own warning), on the runs logging it."""
    records = []
    signs: list[tuple[str, tuple[str, ...], Callable[[Case], Verdict | None]]] = [
        (sign.name, getattr(sign, "metrics", ("critic/advantages/max",)), lambda c, s=sign: s.warn(c.points))
        for sign in build_signs()
    ]
    signs.append(
        ("entropy", ("actor/entropy", "actor/entropy_loss"), lambda c: EntropyRule(c.objective, mode).warn(c.points))
    )
    for name, metrics, warn in signs:
        record = SignCalibration(name)
        for case in cases:
            if not any(m in p.metrics for p in case.points for m in metrics):
                continue
            warning = warn(case)
            if case.onset is None:
                record.healthy_logged += 1
                record.false_alarms += warning is not None
                continue
            record.collapsing_logged += 1
            if warning is None:
                record.never += 1
            elif warning.step <= case.onset:
                record.before += 1
                record.leads.append(case.onset - warning.step)
            else:
                record.after += 1
        records.append(record)
    return records


def spread(values: Sequence[float]) -> str:
    """Return `median [min, max]` with signs, or `-` for no values."""
    if not values:
        return "-"
    return f"{statistics.median(values):+g} [{min(values):+g}, {max(values):+g}]"
