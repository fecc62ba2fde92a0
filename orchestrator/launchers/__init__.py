"""Launchers: where a trainer command runs (`local`: a subprocess in its own process group on this machine;
`slurm`: one sbatch job per attempt, `orchestrator.launchers.slurm`).

A launcher starts a trainer's `Command`, answers `poll` with a `JobState` (a small `Status` plus the backend's raw
words), stops a job with a polite signal and then a kill, keeps its stderr for the record, and releases what an
earlier attempt left running. It knows nothing of trials, metrics or Ray. `make_launcher` picks one from a sweep's
settings; the engine drives it through the `Launcher` protocol alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.launchers._base import JobState, Launcher, Status
from orchestrator.launchers.local import LocalLauncher

if TYPE_CHECKING:
    from orchestrator.launchers.slurm import SlurmOptions

__all__ = ["JobState", "Launcher", "LocalLauncher", "Status", "make_launcher"]


def make_launcher(slurm: SlurmOptions | None, *, grace_s: float = 10.0, state_poll_s: float = 5.0) -> Launcher:
    """Return the launcher a sweep's trials run through.

    Args:
        slurm: The sweep's Slurm job options (`cluster: slurm`), or None for trainer processes on this machine.
        grace_s: Locally: the seconds between SIGTERM and SIGKILL when a trainer is stopped.
        state_poll_s: On Slurm: the least time between two state queries of one job.
    """
    if slurm is None:
        return LocalLauncher(grace_s=grace_s)
    from orchestrator.launchers.slurm import SlurmLauncher

    return SlurmLauncher(slurm, state_poll_s=state_poll_s)
