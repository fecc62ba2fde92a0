"""The report's rescue summary: per remedy, how often a branch of a collapsed trial reached the end of the budget.

A rescue branch (`orchestrator.rescue`) resumes a trial a collapse rule stopped from one of its checkpoints, with a
remedy applied, for the rest of the budget. Branches are not runs of the ablation (its effects compare the sweep's
own trials); this module summarises them apart, per remedy label:

- outcomes: rescued (reached the end of the budget, `completed`), collapsed again (`collapse:<rule>`), running
  (not finished yet), ended otherwise (failed, cancelled, stopped by ASHA). The rescue rate is rescued over the
  branches that either were rescued or collapsed again, with Wilson's 95% interval;
- each branch's best objective after branching (steps after `from_step`) against its parent's best, and their
  mean difference over the finished branches;
- the trainer steps the branches used (each: its last step less `from_step`) and those a from-scratch run of the
  same remedy would take (`max_steps` per branch);
- the sweep's own trials that trained the branch's configuration from step 0 (its overrides but the seeds), when
  the sweep has any: their collapse rate and mean best score.

`rescue_summary` is pure: trial records and histories in, a `RescueSummary` out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.collapse import Mode
from orchestrator.history import StepMetrics, resolve_objective, series
from orchestrator.report._stats import Interval, t_mean_ci, wilson_ci
from orchestrator.spec import SEED_KEYS
from orchestrator.store import TERMINAL, TrialRecord

__all__ = ["BranchResult", "RemedyRescue", "RescueSummary", "ScratchResult", "rescue_summary"]

RESCUED = "rescued"
COLLAPSED_AGAIN = "collapsed again"
RUNNING = "running"
ENDED_OTHERWISE = "ended otherwise"


@dataclass(frozen=True)
class BranchResult:
    """One branch, as the rescue summary sees it.

    Attributes:
        run: The branch's name.
        parent: The parent trial's name.
        remedy: The remedy's label.
        from_step: The parent's step it resumed from.
        outcome: `rescued`, `collapsed again`, `running` or `ended otherwise`.
        stop_reason: Its stop reason (`completed`, `collapse:<rule>`, `failed`, ...), None while running.
        steps: The trainer steps it used (its last step less `from_step`).
        best_after: Its best objective at a step after `from_step`; None before its first evaluation.
        parent_best: The parent's best objective.
    """

    run: str
    parent: str
    remedy: str
    from_step: int
    outcome: str
    stop_reason: str | None
    steps: int
    best_after: float | None
    parent_best: float | None

    @property
    def best_diff(self) -> float | None:
        """Its best after branching less its parent's best; None when either is missing."""
        if self.best_after is None or self.parent_best is None:
            return None
        return self.best_after - self.parent_best

    def to_json(self) -> dict[str, Any]:
        """Return the branch as JSON-friendly values."""
        return {
            "run": self.run,
            "parent": self.parent,
            "remedy": self.remedy,
            "from_step": self.from_step,
            "outcome": self.outcome,
            "stop_reason": self.stop_reason,
            "steps": self.steps,
            "best_after": self.best_after,
            "parent_best": self.parent_best,
            "best_diff": self.best_diff,
        }


@dataclass(frozen=True)
class ScratchResult:
    """The sweep's own trials of a remedy's configuration, trained from step 0.

    Attributes:
        runs: Their names.
        n_collapsed: Those a collapse rule stopped.
        n_rate: Those that collapsed or completed (the rate's denominator).
        collapse_rate: n_collapsed / n_rate with Wilson's 95% interval.
        best_score: Their mean best score with Student's t 95% interval.
        steps: The trainer steps they used (the sum of their last steps).
    """

    runs: tuple[str, ...]
    n_collapsed: int
    n_rate: int
    collapse_rate: Interval
    best_score: Interval
    steps: int

    def to_json(self) -> dict[str, Any]:
        """Return the comparison as JSON-friendly values."""
        return {
            "runs": list(self.runs),
            "n_collapsed": self.n_collapsed,
            "n_rate": self.n_rate,
            "collapse_rate": self.collapse_rate.to_dict(),
            "best_score": self.best_score.to_dict(),
            "steps": self.steps,
        }


@dataclass(frozen=True)
class RemedyRescue:
    """What the branches of one remedy did.

    Attributes:
        remedy: The remedy's label.
        branches: Its branches, in the store's order.
        rate: The rescue rate (rescued / (rescued + collapsed again)) with Wilson's 95% interval.
        best_diff: The mean `best_diff` of its finished branches (running ones' best may still rise) with
            Student's t 95% interval.
        steps_used: The trainer steps its branches used.
        steps_from_scratch: The steps from-scratch runs of it would take: `max_steps` per branch.
        scratch: The sweep's own trials of its configurations, or None when it has none.
    """

    remedy: str
    branches: tuple[BranchResult, ...]
    rate: Interval
    best_diff: Interval
    steps_used: int
    steps_from_scratch: int
    scratch: ScratchResult | None

    def count(self, outcome: str) -> int:
        """Return how many of its branches had `outcome`."""
        return sum(1 for b in self.branches if b.outcome == outcome)

    def to_json(self) -> dict[str, Any]:
        """Return the remedy's summary as JSON-friendly values."""
        return {
            "remedy": self.remedy,
            "n_branches": len(self.branches),
            "n_rescued": self.count(RESCUED),
            "n_collapsed_again": self.count(COLLAPSED_AGAIN),
            "n_running": self.count(RUNNING),
            "n_ended_otherwise": self.count(ENDED_OTHERWISE),
            "rescue_rate": self.rate.to_dict(),
            "best_diff": self.best_diff.to_dict(),
            "steps_used": self.steps_used,
            "steps_from_scratch": self.steps_from_scratch,
            "from_scratch": None if self.scratch is None else self.scratch.to_json(),
            "branches": [b.to_json() for b in self.branches],
        }


@dataclass(frozen=True)
class RescueSummary:
    """The rescue branches of a sweep, per remedy.

    Attributes:
        objective: The objective the best scores are of (`auto`: each branch's own).
        mode: `max` if a higher objective is better, else `min`.
        max_steps: The step budget of every run.
        remedies: One summary per remedy label, in order of first appearance.
    """

    objective: str
    mode: Mode
    max_steps: int
    remedies: tuple[RemedyRescue, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the summary as JSON-friendly values."""
        return {
            "objective": self.objective,
            "mode": self.mode,
            "max_steps": self.max_steps,
            "remedies": [r.to_json() for r in self.remedies],
        }


def rescue_summary(
    records: Sequence[TrialRecord],
    histories: Mapping[str, Sequence[StepMetrics]],
    *,
    objective: str,
    mode: Mode,
    max_steps: int,
    eval_sizes: Mapping[str, int] | None = None,
) -> RescueSummary | None:
    """Summarise a sweep's rescue branches per remedy; None when it has none.

    Args:
        records: Every trial of the sweep, its own and its branches, in the store's order.
        histories: Branch id -> its history (the parent's points up to `from_step`, then its own).
        objective: The spec's `objective.metric` (`auto`: each branch's own, resolved from its history).
        mode: The spec's `objective.mode`.
        max_steps: The spec's `budget.max_steps`.
        eval_sizes: The spec's `objective.eval_sizes` (for `auto`).
    """
    branches = [r for r in records if r.parent is not None]
    if not branches:
        return None
    by_id = {r.id: r for r in records}
    own = [r for r in records if r.parent is None]
    remedies: dict[str, list[TrialRecord]] = {}
    for record in branches:
        remedies.setdefault(record.remedy or "–", []).append(record)
    summaries = []
    for label, members in remedies.items():
        results = tuple(
            _branch_result(r, by_id.get(r.parent or ""), histories.get(r.id, ()), objective, mode, eval_sizes)
            for r in members
        )
        summaries.append(
            RemedyRescue(
                remedy=label,
                branches=results,
                rate=wilson_ci(
                    sum(b.outcome == RESCUED for b in results),
                    sum(b.outcome in (RESCUED, COLLAPSED_AGAIN) for b in results),
                ),
                best_diff=t_mean_ci([d for b in results if b.outcome != RUNNING and (d := b.best_diff) is not None]),
                steps_used=sum(b.steps for b in results),
                steps_from_scratch=max_steps * len(results),
                scratch=_scratch(members, own),
            )
        )
    return RescueSummary(objective, mode, max_steps, tuple(summaries))


def _branch_result(
    record: TrialRecord,
    parent: TrialRecord | None,
    history: Sequence[StepMetrics],
    objective: str,
    mode: Mode,
    eval_sizes: Mapping[str, int] | None,
) -> BranchResult:
    from_step = record.from_step or 0
    metric = resolve_objective(objective, list(history), finished=True, eval_sizes=eval_sizes)[0]
    after = [v for step, v in series(history, metric, finite=True) if step > from_step] if metric else []
    best = (max(after) if mode == "max" else min(after)) if after else None
    return BranchResult(
        run=record.name,
        parent=parent.name if parent is not None else str(record.parent),
        remedy=record.remedy or "–",
        from_step=from_step,
        outcome=_outcome(record),
        stop_reason=None if record.status not in TERMINAL or record.stop_reason is None else str(record.stop_reason),
        steps=max((record.last_step or from_step) - from_step, 0),
        best_after=best,
        parent_best=None if parent is None or parent.best_score is None else float(parent.best_score),
    )


def _outcome(record: TrialRecord) -> str:
    if record.status == "completed":
        return RESCUED
    if record.status not in TERMINAL:
        return RUNNING
    if record.stop_reason is not None and record.stop_reason.is_collapse:
        return COLLAPSED_AGAIN
    return ENDED_OTHERWISE


def _configuration(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return the overrides but the seeds: what a trial trains with, whichever seed."""
    return {k: v for k, v in overrides.items() if k not in SEED_KEYS}


def _scratch(branches: Sequence[TrialRecord], own: Sequence[TrialRecord]) -> ScratchResult | None:
    """Return the sweep's own trials that trained one of the branches' configurations from step 0, if any."""
    wanted = [_configuration(b.overrides) for b in branches]
    matches = [r for r in own if _configuration(r.overrides) in wanted]
    if not matches:
        return None
    collapsed = sum(
        1 for r in matches if r.status in TERMINAL and r.stop_reason is not None and r.stop_reason.is_collapse
    )
    decided = collapsed + sum(1 for r in matches if r.status == "completed")
    scores = [float(r.best_score) for r in matches if r.best_score is not None and math.isfinite(r.best_score)]
    return ScratchResult(
        runs=tuple(r.name for r in matches),
        n_collapsed=collapsed,
        n_rate=decided,
        collapse_rate=wilson_ci(collapsed, decided),
        best_score=t_mean_ci(scores),
        steps=sum(r.last_step or 0 for r in matches),
    )
