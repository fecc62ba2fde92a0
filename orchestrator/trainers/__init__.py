"""Trainer backends: turn a Trial into the argv and environment of one training process.

A trainer spawns nothing and builds no shell string: `command()` is pure, `validate()` checks trials against the
trainer's own config schema before anything is launched. Both backends speak verl's override dialect, so the same
trial overrides serve both; each adds its own run plumbing (logger, names, checkpoint dir, resume mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.design import Trial

__all__ = ["Command", "RunContext", "Trainer", "get_trainer", "plumbing_overrides"]


@dataclass(frozen=True)
class Command:
    """What to run for one trial attempt: an argv list and the environment variables to add."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """Where one attempt of a trial runs and writes.

    Attributes:
        workdir: the trial's directory (checkpoints, metrics files, logs).
        project: the sweep's name (verl's trainer.project_name).
        attempt: 0 for the first attempt; each retry gets its own metrics file, since verl truncates it at start.
        resume_from: A `global_step_N` checkpoint folder to start from (a rescue branch that has none of its own
            yet): verl's `trainer.resume_mode=resume_path`. None resumes from the latest in `checkpoint_dir`, if any.
    """

    workdir: Path
    project: str
    attempt: int = 0
    resume_from: Path | None = None

    @property
    def checkpoint_dir(self) -> Path:
        """Return where the trainer saves `global_step_N/` checkpoints."""
        return self.workdir / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        """Return this attempt's metrics file (verl's file logger, JSONL)."""
        return self.workdir / f"metrics.{self.attempt}.jsonl"


class Trainer(Protocol):
    """A training backend."""

    name: str
    eval_sources: tuple[str, ...] | None
    """The data sources its validation metrics name, when known before a run (else None)."""

    def command(self, trial: Trial, ctx: RunContext) -> Command:
        """Return the argv and env of one attempt of `trial`. Pure: spawns nothing, touches no file."""
        ...

    def validate(self, trials: Sequence[Trial], ctx_for: Any) -> dict[str, list[str]]:
        """Return, per trial id, every problem the trainer's own config finds with its overrides (empty: valid).

        `ctx_for(trial) -> RunContext` gives the paths the real command would use. No process is started.
        """
        ...


def plumbing_overrides(trial: Trial, ctx: RunContext) -> dict[str, Any]:
    """Return the run plumbing both backends take: loggers, names, checkpoint dir, resume from the latest."""
    plumbing = {
        "trainer.logger": ["console", "file"],
        "trainer.project_name": ctx.project,
        "trainer.experiment_name": trial.name,
        "trainer.default_local_dir": str(ctx.checkpoint_dir.absolute()),
        "trainer.resume_mode": "auto",
    }
    if ctx.resume_from is not None:
        plumbing["trainer.resume_mode"] = "resume_path"
        plumbing["trainer.resume_from_path"] = str(Path(ctx.resume_from).absolute())
    return plumbing


def get_trainer(backend: str, **options: Any) -> Trainer:
    """Return the trainer for a backend name (`verl` or `mini`)."""
    if backend == "verl":
        from orchestrator.trainers.verl import VerlTrainer

        return VerlTrainer(**options)
    if backend == "mini":
        from orchestrator.trainers.mini import MiniTrainer

        return MiniTrainer(**options)
    raise ValueError(f"backend must be one of verl, mini (got {backend!r})")
