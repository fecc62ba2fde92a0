"""How each trial runs: its budget of steps, the resources it needs, retries and concurrency, its trackers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orchestrator.spec._base import Strict


class Budget(Strict):
    """How long each trial trains, and how often it is evaluated and checkpointed (in training steps)."""

    max_steps: int = Field(ge=1)
    eval_every: int = Field(ge=1)
    save_every: int = Field(ge=1)
    hours_per_trial: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _save_divides_eval(self) -> Budget:
        if self.eval_every % self.save_every != 0:
            raise ValueError(
                f"`save_every` must divide `eval_every` so that every eval step has a checkpoint "
                f"(got save_every={self.save_every}, eval_every={self.eval_every})"
            )
        if self.eval_every > self.max_steps:
            raise ValueError(
                f"`eval_every` must be at most `max_steps` (got eval_every={self.eval_every}, "
                f"max_steps={self.max_steps})"
            )
        return self


class Resources(Strict):
    """What one trial needs: GPUs per node, CPUs per node, nodes."""

    gpus: int = Field(default=0, ge=0)
    cpus: float = Field(default=1.0, gt=0)
    nodes: int = Field(default=1, ge=1)


class Execution(Strict):
    """How failures are retried and how many trials run at once."""

    max_failures: int = Field(default=2, ge=0)
    max_concurrent_trials: int | None = Field(default=None, ge=1)


class Wandb(Strict):
    """Weights & Biases logging of each trial (offline by default: no network needed)."""

    project: str
    entity: str | None = None
    mode: Literal["offline", "online", "disabled"] = "offline"


class Tracking(Strict):
    """Experiment trackers each trial logs to, besides ablate's own store."""

    wandb: Wandb | None = None
