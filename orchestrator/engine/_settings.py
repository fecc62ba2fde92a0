"""What every trial worker knows about its sweep, and the names the engine and Tune share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.checkpoints import CheckpointKeeper
from orchestrator.collapse import CollapseConfig
from orchestrator.design import Trial
from orchestrator.judge import TrialJudge
from orchestrator.launchers import Launcher, make_launcher
from orchestrator.launchers.slurm import SlurmOptions
from orchestrator.rescue import KEEP_EVALS_FOR_LAST_HEALTHY
from orchestrator.search import search_template
from orchestrator.spec import SweepSpec
from orchestrator.sweepdir import SweepDir
from orchestrator.trainers import Trainer, get_trainer

SIGNAL = "signal"
"""The metric reported to Tune for ASHA: best-so-far or an EMA of the objective (never NaN)."""
STORE_ID = "ablate_trial_id"
"""The result key that carries a trial's store id (Tune fills `trial_id` with its own)."""
PROXY_CPUS = 0.01
"""The CPU share of a Tune trial that only follows a Slurm job (Tune needs some resource per trial)."""
TRIAL_END_WAIT_S = 180
"""How long Tune waits for a stopped trial's function to return before handing its worker to the next trial.

Tune's own wait (`TUNE_FUNCTION_THREAD_TIMEOUT_S`, 2 s by default) is shorter than a stop takes: the function first
stops its trainer (up to `stop_grace_s`, then SIGKILL) or waits for its cancelled Slurm job to leave the queue (up
to 60 s). Past the wait the reuse fails, and Tune (2.60) then leaves the next trial pending for ever.
"""


@dataclass(frozen=True)
class SweepSettings:
    """What every trial worker needs to know about its sweep (picklable; given to Tune with the trainable)."""

    sweep_dir: str
    project: str
    backend: str
    objective: str
    mode: str
    collapse: dict[str, Any] | None
    eval_sizes: dict[str, int] = field(default_factory=dict)
    """The spec's `objective.eval_sizes`."""
    signal: str = "best"
    ema_alpha: float = 0.5
    poll_s: float = 0.5
    stop_grace_s: float = 10.0
    wandb: dict[str, Any] | None = None
    search_template: Trial | None = None
    """For a search: the configuration its samples vary (`orchestrator.search.search_template`)."""
    slurm: SlurmOptions | None = None
    """Set for `cluster: slurm`: each attempt is an sbatch job asking for this."""
    requeue: bool = True
    """On Slurm: resubmit a job the cluster ended (preempted, time limit, node failure) to resume."""
    slurm_poll_s: float = 5.0
    """On Slurm: the least time between two state queries of one job."""
    keep_evals: int = 0
    """Keep each trial's checkpoints of this many latest evaluated steps too (`pruning.rescue.from: last_healthy`)."""

    @property
    def folder(self) -> SweepDir:
        """The sweep folder."""
        return SweepDir(self.sweep_dir)

    @property
    def db_path(self) -> Path:
        """Return the sweep store's path."""
        return self.folder.db

    def workdir(self, trial_name: str) -> Path:
        """Return a trial's directory."""
        return self.folder.trial(trial_name)

    def trainer(self) -> Trainer:
        """Return the trainer builder of this sweep's backend."""
        options: dict[str, Any] = {}
        if self.slurm is not None and self.slurm.nodes > 1 and self.backend == "verl":
            options["private_ray"] = False  # verl joins the Ray cluster the job starts over its nodes
        return get_trainer(self.backend, **options)

    def launcher(self) -> Launcher:
        """Return a launcher for this sweep's trainers: local processes, or Slurm jobs for `cluster: slurm`."""
        return make_launcher(self.slurm, grace_s=self.stop_grace_s, state_poll_s=self.slurm_poll_s)

    def keeper(self, trial_name: str) -> CheckpointKeeper:
        """Return the checkpoint keeper of a trial's folder."""
        checkpoint_dir = self.workdir(trial_name) / "checkpoints"
        return CheckpointKeeper(checkpoint_dir, mode=self.mode, keep_evals=self.keep_evals)  # type: ignore[arg-type]

    def judge(self) -> TrialJudge:
        """Return a new judge of one trial's points under this sweep's objective, collapse rules and signal."""
        collapse = None if self.collapse is None else CollapseConfig.model_validate(self.collapse)
        return TrialJudge(
            self.objective, self.mode, collapse, signal=self.signal, ema_alpha=self.ema_alpha, eval_sizes=self.eval_sizes
        )

    @classmethod
    def from_spec(cls, spec: SweepSpec, sweep_dir: Path, *, poll_s: float = 0.5) -> SweepSettings:
        """Return the settings of a sweep run from `spec` in `sweep_dir`."""
        asha = spec.pruning.asha
        wandb = spec.tracking.wandb
        rescue = spec.pruning.rescue
        return cls(
            sweep_dir=str(sweep_dir.absolute()),
            project=spec.name,
            backend=spec.trainer.backend,
            objective=spec.objective.metric,
            mode=spec.objective.mode,
            collapse=None if spec.pruning.collapse is None else spec.pruning.collapse.model_dump(),
            eval_sizes=dict(spec.objective.eval_sizes),
            signal=asha.signal if asha else "best",
            ema_alpha=asha.ema_alpha if asha else 0.5,
            poll_s=poll_s,
            search_template=None if spec.search is None else search_template(spec),
            wandb=None if wandb is None or wandb.mode == "disabled" else wandb.model_dump(),
            slurm=None if spec.cluster == "local" else SlurmOptions.from_spec(spec),
            requeue=True if spec.cluster == "local" else spec.cluster.slurm.requeue,
            slurm_poll_s=min(5.0, max(poll_s, 1.0)),
            keep_evals=KEEP_EVALS_FOR_LAST_HEALTHY if rescue is not None and rescue.from_ == "last_healthy" else 0,
        )
