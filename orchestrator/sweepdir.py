"""The sweep folder: where a sweep's store, spec, trials and Tune state live.

    <sweep_dir>/
      sweep.db                 the store (`orchestrator.store`)
      spec.yaml                the spec's text, as the sweep started from it
      trials/<trial name>/     one folder per trial: metrics, logs, checkpoints (`orchestrator.trainers.RunContext`)
      tune/experiment/         Ray Tune's experiment state (what a resumed sweep restores)

Every path into a sweep folder is built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import AblateError

__all__ = ["DB_NAME", "SPEC_NAME", "SweepDir"]

DB_NAME = "sweep.db"
SPEC_NAME = "spec.yaml"
_TRIALS = "trials"
_TUNE = "tune"
_EXPERIMENT = "experiment"


@dataclass(frozen=True)
class SweepDir:
    """A sweep folder's layout.

    Attributes:
        path: The folder (as given: relative paths stay relative).
    """

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def db(self) -> Path:
        """The sweep store."""
        return self.path / DB_NAME

    @property
    def spec(self) -> Path:
        """The spec the sweep started from."""
        return self.path / SPEC_NAME

    @property
    def trials(self) -> Path:
        """The folder holding one folder per trial."""
        return self.path / _TRIALS

    def trial(self, name: str) -> Path:
        """Return the folder of the trial named `name`."""
        return self.path / _TRIALS / name

    @property
    def tune_storage(self) -> Path:
        """Ray Tune's storage path (absolute, as Tune wants it)."""
        return (self.path / _TUNE).absolute()

    @property
    def tune_experiment(self) -> Path:
        """Ray Tune's experiment folder (absolute)."""
        return self.tune_storage / _EXPERIMENT

    @property
    def experiment_name(self) -> str:
        """The name Tune gives the experiment (the last part of `tune_experiment`)."""
        return _EXPERIMENT

    def exists(self) -> bool:
        """Return True if the folder holds a sweep store."""
        return self.db.is_file()

    def require(self) -> SweepDir:
        """Return self if the folder holds a sweep store.

        Raises:
            AblateError: If it does not, naming the folder and what to run first.
        """
        if not self.exists():
            raise AblateError(f"{self.path}: not a sweep directory (no {DB_NAME}); run `ablate run SPEC` first")
        return self
