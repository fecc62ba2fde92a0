"""What every launcher shares: the job status, the state a poll returns, and the launcher protocol."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from orchestrator.trainers import Command

__all__ = ["JobState", "Launcher", "Status"]


class Status(enum.Enum):
    """Where a launched trainer job is."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"
    """Ended by the cluster, not by the trainer: preempted, time limit, node failure, cancelled by someone else."""
    UNKNOWN = "UNKNOWN"

    @property
    def done(self) -> bool:
        """Return True for a final status (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)."""
        return self in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.INTERRUPTED)


@dataclass(frozen=True)
class JobState:
    """The state of a job at one poll.

    Attributes:
        status: The status, mapped from the backend's own state.
        raw: The backend's own words for it (`exited with 3`, `killed by SIGKILL`, sacct's `OUT_OF_MEMORY`).
        exit_code: The process's exit code once it has ended (negative: killed by that signal), else None.
    """

    status: Status
    raw: str
    exit_code: int | None = None


@runtime_checkable
class Launcher(Protocol):
    """Runs trainer commands somewhere and answers for them by a string handle.

    The engine drives every launcher through this protocol alone: it records what `describe` returns when a job
    starts, and hands those records back to `release` to make sure nothing of an earlier attempt still runs.
    """

    detached: bool
    """True when a job outlives the process that started it (a Slurm job): the driver then releases a trial's
    jobs itself when it stops the trial, since the trial's worker may be gone before it could."""

    def start(
        self,
        command: Command,
        workdir: Path,
        *,
        attempt: int = 0,
        env: Mapping[str, str] | None = None,
        gpus: Sequence[int | str] | None = None,
    ) -> str:
        """Return the handle of a newly started job running `command`.

        Called once per attempt of a trial. The job's output goes to log files in `workdir` named after the
        attempt. It never runs a shell.

        Args:
            command: The argv and environment from the trainer builder.
            workdir: The trial's directory: the job's working directory and where its logs go.
            attempt: The attempt number (0 first), used in the log file names.
            env: More environment variables, on top of the launcher's environment and `command.env`.
            gpus: The GPUs the job may use (`CUDA_VISIBLE_DEVICES`); None leaves the environment's setting.

        Raises:
            LaunchError: If the job cannot be started; the message names the program, workdir and log.
        """
        ...

    def poll(self, handle: str) -> JobState:
        """Return the job's state now.

        Cheap and safe to call in a loop. It never raises for a backend hiccup or an unknown handle: it logs it
        and returns UNKNOWN.
        """
        ...

    def stop(self, handle: str, grace_s: float = 10.0) -> None:
        """Stop the job and everything it started: a polite signal, `grace_s` to exit, then a kill.

        Idempotent: stopping a finished or already stopped job does nothing more. Returns once the job is gone.
        """
        ...

    def wait(self, handle: str, timeout_s: float | None = None) -> JobState:
        """Return once the job has ended or `timeout_s` has passed (None: no limit), with its last state."""
        ...

    def stderr_tail(self, handle: str, n_lines: int = 40) -> str:
        """Return the last `n_lines` lines the job wrote to stderr (empty if none)."""
        ...

    def log_paths(self, handle: str) -> tuple[Path, Path]:
        """Return the job's stdout and stderr log files."""
        ...

    def describe(self, handle: str) -> dict[str, Any]:
        """Return what to record about a started job (JSON-ready): what `release` needs to find it again."""
        ...

    def release(self, started: Sequence[Mapping[str, Any]], workdir: Path) -> None:
        """Make sure no job of the given earlier starts still runs, even one a dead process left behind.

        Args:
            started: What `describe` returned for each earlier start (extra keys are ignored).
            workdir: The trial's directory those jobs ran in (a recorded id may since name something else).
        """
        ...
