"""Where trials run when not locally: the Slurm settings, and the sbatch options ablate keeps for itself."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from orchestrator.spec._base import Strict

_SLURM_VALUE_RE = re.compile(r"^[A-Za-z0-9._,:@%+=/-]{1,128}$")
_SLURM_TIME_RE = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")
_SBATCH_OPTION_RE = re.compile(r"^--[a-z][a-z0-9-]*=[A-Za-z0-9._,:@%+=/-]+$")
# Options ablate sets in every trial job itself (or that would break the job's contract with the launcher).
_SBATCH_OWN_OPTIONS = (
    "job-name", "chdir", "output", "error", "input", "nodes", "ntasks", "ntasks-per-node", "cpus-per-task",
    "gpus", "gpus-per-node", "gpus-per-task", "gres", "time", "partition", "account", "qos", "constraint",
    "requeue", "no-requeue", "array", "wrap", "parsable", "export", "export-file", "test-only", "dependency",
    "wait", "hold", "batch", "kill-on-invalid-dep",
)  # fmt: skip


class Slurm(Strict):
    """Where Slurm runs each trial: one sbatch job per trial attempt.

    `gpus_per_node` and `nodes` are the spec's `resources.gpus` and `resources.nodes`, accepted here too (the
    spec refuses the two places disagreeing). `requeue`: resubmit a job the cluster ended (preempted, time limit,
    node failure, cancelled outside ablate) so that it resumes from its latest checkpoint, counted against
    `execution.max_failures`; false ends such a trial as failed.
    """

    gpus_per_node: int | None = Field(default=None, ge=0)
    nodes: int | None = Field(default=None, ge=1)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "24:00:00"
    constraint: str | None = None
    extra_sbatch: list[str] = Field(default_factory=list)
    max_jobs: int | None = Field(default=None, ge=1)
    requeue: bool = True

    @field_validator("partition", "account", "qos", "constraint")
    @classmethod
    def _plain_value(cls, value: str | None) -> str | None:
        if value is not None and not _SLURM_VALUE_RE.match(value):
            raise ValueError(f"must match {_SLURM_VALUE_RE.pattern} (got {value!r})")
        return value

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: str) -> str:
        if not _SLURM_TIME_RE.match(value):
            raise ValueError(f"must be a Slurm time such as 04:00:00 or 1-12:00:00 (got {value!r})")
        return value

    @field_validator("extra_sbatch")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        for option in value:
            if not _SBATCH_OPTION_RE.match(option):
                raise ValueError(f"each entry must be one `--key=value` sbatch option (got {option!r})")
            key = option[2:].split("=", 1)[0]
            if key in _SBATCH_OWN_OPTIONS:
                raise ValueError(
                    f"`--{key}` is set by ablate itself (use resources, time, partition, account, qos or "
                    f"constraint) (got {option!r})"
                )
        return value


class SlurmCluster(Strict):
    """`cluster: {slurm: {...}}`."""

    slurm: Slurm
