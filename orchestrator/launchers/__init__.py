"""Launchers: where a trainer command runs (`local`: a subprocess in its own process group on this machine;
`slurm`: one sbatch job per attempt, `orchestrator.launchers.slurm`).

A launcher starts a trainer's `Command`, answers `poll` with a `JobState` (a small `Status` plus the backend's raw
words), stops a job with a polite signal and then a kill, and keeps its stderr for the record. It knows nothing of
trials, metrics or Ray.
"""

from __future__ import annotations

from orchestrator.launchers._base import JobState, Launcher, Status
from orchestrator.launchers.local import LocalLauncher

__all__ = ["JobState", "Launcher", "LocalLauncher", "Status"]
