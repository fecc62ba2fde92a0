"""`Run`: what every reader returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.history import StepMetrics, metric_names, resolve_objective


@dataclass(frozen=True, slots=True)
class Run:
    """The metric history of one run, read from a log.

    Attributes:
        name: The run's name (the file name without its extension, or the log folder's name).
        points: One point per step, in increasing step order.
        n_skipped: How many malformed lines or rows were skipped.
        format: The reader that read it: `jsonl`, `console`, `tensorboard` or `wandb_csv`.
        path: Where it was read from.
    """

    name: str
    points: tuple[StepMetrics, ...]
    n_skipped: int = 0
    format: str = ""
    path: Path | None = None

    @property
    def metric_names(self) -> list[str]:
        """Return the sorted names of every metric the run logged."""
        return metric_names(self.points)

    @property
    def objective(self) -> str | None:
        """Return the metric the run is judged by under `objective: auto` (`orchestrator.history.resolve_objective`)."""
        return resolve_objective("auto", self.points, finished=True)[0]


def run_name(path: Path) -> str:
    """Return a readable run name for a log file or folder."""
    # TensorBoard names its files events.out.tfevents.<time>.<host>: the folder names the run.
    if path.name.startswith("events.out.tfevents"):
        return path.parent.name
    return path.stem if path.is_file() else path.name
