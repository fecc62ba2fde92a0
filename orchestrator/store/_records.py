"""What the store holds, as read back: sweeps, trials, events and kept checkpoints, and their allowed values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.design import Trial
from orchestrator.store._reasons import StopReason

SWEEP_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
TRIAL_STATUSES = ("pending", "queued", "running", "completed", "stopped", "failed", "cancelled")
CHECKPOINT_ROLES = ("best", "latest")
EVENT_KINDS = (
    "queued",
    "started",
    "retried",
    "stopped",
    "completed",
    "failed",
    "cancelled",
    "collapse_warning",
    "objective",
    "checkpoint_kept",
    "checkpoint_deleted",
)
"""The event kinds ablate writes; `append_event` accepts any other lower_snake_case kind as well."""


@dataclass(frozen=True)
class SweepRecord:
    """A sweep as stored.

    Attributes:
        id: The sweep's id.
        name: The spec's name.
        spec: The spec's text (YAML or JSON), as it was run.
        created: Unix time the sweep was created.
        status: One of `SWEEP_STATUSES`.
    """

    id: str
    name: str
    spec: str
    created: float
    status: str


@dataclass(frozen=True)
class TrialRecord:
    """A trial as stored: its design (from `Trial`) and its outcome so far.

    Attributes:
        id, name, point, levels, values, seed, overrides: As in `orchestrator.design.Trial`.
        sweep_id: The sweep it belongs to.
        status: One of `TRIAL_STATUSES`.
        stop_reason: `completed`, `collapse:<rule>`, `asha`, `failed` or `cancelled`; None while not stopped.
        stop_step: The step at which it was stopped.
        stop_evidence: What the stopping rule saw (a collapse verdict's evidence, ASHA's rung, an exit code).
        best_step: The eval step with the best objective so far.
        best_score: The objective at `best_step`.
        collapse_step: The collapse onset (the first step judged collapsed), which may precede `stop_step`.
        last_step: The highest step with metrics in the store.
        attempts: How many times the trainer was started.
        stderr_tail: The last lines the trainer wrote to stderr (kept from its last failure).
        updated: Unix time of the last change.
        parent, from_step, remedy: For a rescue branch, as in `orchestrator.design.Trial`; None otherwise.
    """

    id: str
    sweep_id: str
    name: str
    point: str
    levels: dict[str, str]
    values: dict[str, Any]
    seed: int
    overrides: dict[str, Any]
    status: str
    stop_reason: StopReason | None
    stop_step: int | None
    stop_evidence: dict[str, Any] | None
    best_step: int | None
    best_score: float | None
    collapse_step: int | None
    last_step: int | None
    attempts: int
    stderr_tail: str | None
    updated: float
    parent: str | None = None
    from_step: int | None = None
    remedy: str | None = None

    def trial(self) -> Trial:
        """Return the designed trial this record stores."""
        return Trial(
            id=self.id,
            name=self.name,
            point=self.point,
            levels=self.levels,
            values=self.values,
            seed=self.seed,
            overrides=self.overrides,
            parent=self.parent,
            from_step=self.from_step,
            remedy=self.remedy,
        )


@dataclass(frozen=True)
class EventRecord:
    """Something that happened to a trial, in the order it was appended.

    Attributes:
        id: Increasing with append order.
        trial_id: The trial it happened to.
        time: Unix time it was appended.
        kind: E.g. `started`, `stopped`, `retried`, `checkpoint_kept` (see `EVENT_KINDS`).
        attempt: The trainer attempt it concerns, if any.
        data: Details (JSON-ready).
    """

    id: int
    trial_id: str
    time: float
    kind: str
    attempt: int | None
    data: dict[str, Any]


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint kept for a trial.

    Attributes:
        trial_id: The trial.
        role: `best` (the best eval step's checkpoint) or `latest` (the one a resume starts from).
        step: The training step the checkpoint holds.
        path: Its folder.
        updated: Unix time it was recorded.
    """

    trial_id: str
    role: str
    step: int
    path: str
    updated: float


def status_for_stop_reason(reason: str) -> str:
    """Return the trial status a stop reason leads to (`collapse:<rule>` and `asha` -> `stopped`).

    Raises:
        ValueError: If `reason` is not a stop reason.
    """
    return StopReason(reason).status
