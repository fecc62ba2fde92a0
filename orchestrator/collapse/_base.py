"""The rule protocol, its verdict, and the OR over rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from orchestrator.history import History

Mode = Literal["max", "min"]
"""Whether a higher (`max`) or a lower (`min`) objective is better."""

Baseline = float | Literal["first"]
"""What a score's gain is measured from: a fixed value, or the run's first evaluation."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's judgement that a run has collapsed (or, for a warning, looks unhealthy).

    Attributes:
        rule: The rule's name, e.g. `score_drop`; a stop is recorded as `collapse:<rule>`.
        step: The step at which the rule fires: the run would be stopped after this step.
        reason: One sentence with the numbers the rule used.
        evidence: The values the rule used (JSON-friendly: str, int, float, lists), so that a report can show
            them without running the rule again. `onset_step`, where present, is the first step (for score
            rules the first evaluation) judged collapsed.
    """

    rule: str
    step: int
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Rule(Protocol):
    """A collapse rule: a pure judgement over a run's whole metric history."""

    name: str

    def check(self, history: History) -> Verdict | None:
        """Return the verdict at the earliest step at which the rule fires, or None if it never does.

        Called on every new step of a live trial and once on a recorded run. It is pure: no I/O, no state kept
        between calls, so `check(history[:i])` first returns a verdict at the firing step, and the same verdict
        for every longer history. NaN and inf in the history never raise.

        Args:
            history: The run's points in increasing step order.
        """
        raise NotImplementedError


@runtime_checkable
class WarningRule(Protocol):
    """A rule that also reports an unhealthy sign that does not stop the run on its own."""

    name: str

    def warn(self, history: History) -> Verdict | None:
        """Return the earliest warning in the history, or None. Pure, like `Rule.check`."""
        raise NotImplementedError


def first_verdict(rules: Iterable[Rule], history: History) -> Verdict | None:
    """Return the earliest verdict of any rule (the first listed rule wins a tie), or None.

    Args:
        rules: The rules to apply, e.g. from `build_rules`.
        history: The run's points in increasing step order.
    """
    verdicts = [verdict for verdict in (rule.check(history) for rule in rules) if verdict is not None]
    if not verdicts:
        return None
    return min(verdicts, key=lambda verdict: verdict.step)


def end_verdict(rules: Iterable[Rule], history: History) -> Verdict | None:
    """Judge a finished run: `first_verdict`, else the earliest `at_end` verdict of a rule that has one.

    An `at_end` verdict says the run ended collapsed without the confirmation a live rule waits for (its evidence
    has `confirmed: False`): its last evaluations dropped but were too few to fire.

    Args:
        rules: The rules to apply.
        history: The run's whole history, in increasing step order.
    """
    rules = list(rules)
    verdict = first_verdict(rules, history)
    if verdict is not None:
        return verdict
    ends = [end for end in (rule.at_end(history) for rule in rules if hasattr(rule, "at_end")) if end is not None]
    return min(ends, key=lambda end: end.step) if ends else None


def collapse_walk(rules: Sequence[Rule], points: History, start: int = 0) -> tuple[Verdict, int] | None:
    """Judge a history as a live trial does, point by point: `first_verdict` on each prefix, from `start`, until
    one fires. A trial judges the batches of points it reads, and a rule fires at its earliest step, so the first
    verdict is the same; this also says after which point it was first given.

    Args:
        rules: The rules (from `build_rules`).
        points: The history, in increasing step order.
        start: The index of the first point after which the engine judges (its objective is known from there).

    Returns:
        The first verdict and the index of the point after which it was given, or None if no prefix collapses.
    """
    if not rules:
        return None
    for index in range(start, len(points)):
        verdict = first_verdict(rules, points[: index + 1])
        if verdict is not None:
            return verdict, index
    return None


def collect_warnings(rules: Iterable[Rule], history: History) -> list[Verdict]:
    """Return the earliest warning of each rule that gives warnings, in step order.

    Args:
        rules: The rules to apply; those without a `warn` method are skipped.
        history: The run's points in increasing step order.
    """
    warners: Sequence[WarningRule] = [rule for rule in rules if isinstance(rule, WarningRule)]
    found = [warning for warning in (warner.warn(history) for warner in warners) if warning is not None]
    return sorted(found, key=lambda warning: warning.step)
