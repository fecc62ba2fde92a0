"""The pre-flight check: a spec's trials, each checked against its trainer, before anything runs or is written.

One check for `ablate plan`, `ablate run`, the service's submissions and the engine: the design (the trials a
spec runs; for a search, its corners stand for the trials it will sample), each trial validated against the
trainer's own config and its command built, and where the trials can run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.design import Trial, expand
from orchestrator.errors import AblateError
from orchestrator.rescue import branch_trial, check_remedies
from orchestrator.spec import SweepSpec
from orchestrator.sweepdir import SweepDir
from orchestrator.trainers import RunContext, get_trainer

__all__ = ["Preflight", "check_target", "preflight"]


@dataclass(frozen=True)
class Preflight:
    """What the pre-flight found.

    Attributes:
        spec: The spec.
        trials: The trials the sweep runs (empty for a search: its trials are sampled as it runs).
        checked: The trials checked: `trials`, or a search's corner trials (none when nothing was checked).
        warnings: The design's warnings.
        problems: Trial id -> what is wrong with it (empty lists when valid; only when validated).
        argv: Trial id -> its trainer's argv (empty when it cannot be built).
        validated: Whether the trials were checked against the trainer's config.
    """

    spec: SweepSpec
    trials: list[Trial]
    checked: list[Trial]
    warnings: list[str] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)
    validated: bool = True

    @property
    def n_invalid(self) -> int:
        """How many checked trials have a problem."""
        return sum(1 for t in self.checked if self.problems.get(t.id))

    def errors(self) -> list[tuple[Trial, str]]:
        """Return every (trial, problem), in trial order."""
        return [(t, p) for t in self.checked for p in self.problems.get(t.id, [])]


def preflight(spec: SweepSpec, sweep_dir: Path, *, validate: bool = True, build: bool = True) -> Preflight:
    """Design the spec's trials and check each against its trainer.

    Args:
        spec: The validated spec.
        sweep_dir: The sweep folder the trials' commands point at (nothing is written there).
        validate: Check every trial against the trainer's own config.
        build: Build every trial's command (a value the trainer refuses is a problem of that trial).

    Raises:
        AblateError: If the design or the trainer's config check cannot run at all.
    """
    expansion = expand(spec)
    trials = list(expansion.trials) if spec.search is None else []
    rescue = spec.pruning.rescue
    if rescue is not None:
        check_remedies(trials, rescue.parsed())
    if not (validate or build):
        return Preflight(spec, trials, [], list(expansion.warnings), validated=False)
    checked = list(expansion.trials)
    if rescue is not None and trials:
        # Each remedy is checked against the trainer's config on a branch of the first trial.
        checked += [branch_trial(trials[0], remedy, from_step=0) for remedy in rescue.parsed()]
    if spec.search is not None:
        from orchestrator.search import corner_trials

        checked = corner_trials(spec)
    folder = SweepDir(sweep_dir)
    problems: dict[str, list[str]] = {t.id: [] for t in checked}
    argv: dict[str, list[str]] = {}
    trainer = get_trainer(spec.trainer.backend)
    _check_eval_sizes(spec, trainer.eval_sources)

    def context(trial: Trial) -> RunContext:
        return RunContext(workdir=folder.trial(trial.name), project=spec.name)

    if validate:
        for trial_id, found in trainer.validate(checked, context).items():
            problems.setdefault(trial_id, []).extend(found)
    if build:
        for trial in checked:
            try:
                argv[trial.id] = list(trainer.command(trial, context(trial)).argv)
            except ValueError as exc:
                problems[trial.id].append(str(exc))
                argv[trial.id] = []
    return Preflight(spec, trials, checked, list(expansion.warnings), problems, argv, validate)


def _check_eval_sizes(spec: SweepSpec, logged: tuple[str, ...] | None) -> None:
    """Refuse an `objective.eval_sizes` entry for a data source the trainer never logs (when that is known)."""
    if logged is None:
        return
    unknown = [source for source in spec.objective.eval_sizes if source not in logged]
    if unknown:
        raise AblateError(
            f"objective.eval_sizes: the {spec.trainer.backend} trainer never logs the data source "
            f"`{unknown[0]}` (it logs: {', '.join(logged)})"
        )


def check_target(spec: SweepSpec, sweep_dir: Path) -> None:
    """Refuse, before starting Ray or writing anything, a sweep that cannot run where its spec says.

    Raises:
        AblateError: For a Slurm cluster that refuses the job (`sbatch --test-only`) or a folder its nodes cannot
            reach, and for a multi-node trial on a Ray cluster.
    """
    if spec.cluster != "local":
        from orchestrator.launchers.slurm import SlurmOptions, check_sbatch, check_slurm_path

        check_slurm_path(sweep_dir.absolute())
        check_sbatch(SlurmOptions.from_spec(spec))
        return
    if spec.resources.nodes > 1:
        raise AblateError(
            f"resources.nodes is {spec.resources.nodes}: on a Ray cluster each trial runs on one node; "
            "multi-node trials need Slurm"
        )
