"""The driver side of the engine: one Ray Tune experiment per sweep.

`run_sweep` registers the sweep's trials in the store, starts (or joins) Ray, runs every trial as a Tune trial
(`orchestrator.engine._trial.run_trial`) under the spec's scheduler, and settles the store when Tune returns: no
trainer left running, every trial's best checkpoint kept, what did not finish marked resumable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.design import Trial
from orchestrator.engine._settings import PROXY_CPUS, SIGNAL, TRIAL_END_WAIT_S, SweepSettings
from orchestrator.engine._trial import record_checkpoints, run_trial
from orchestrator.engine._tune import RecordedSignals, StoreCallback
from orchestrator.errors import AblateError
from orchestrator.history import resolve_objective
from orchestrator.preflight import check_target, preflight
from orchestrator.spec import Remedy, SweepSpec
from orchestrator.store import TERMINAL, SQLiteStore, TrialRecord, started
from orchestrator.sweepdir import SweepDir


@dataclass
class SweepOutcome:
    """What `run_sweep` leaves: where, and how many trials ended how."""

    sweep_dir: Path
    counts: dict[str, int]
    interrupted: bool = False
    failed: list[TrialRecord] = field(default_factory=list)
    """The trials that failed after their retries (the sweep did not succeed)."""


def prepare_sweep(spec: SweepSpec, spec_text: str, sweep_dir: Path) -> tuple[SQLiteStore, list[Trial]]:
    """Create (or reopen) the sweep directory and store; refuse a directory started from a different spec."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # A search's trials are sampled as it runs: each registers itself (`_register_search_trial`).
    trials = preflight(spec, sweep_dir, validate=False, build=False).trials
    folder = SweepDir(sweep_dir)
    store = SQLiteStore(folder.db)
    existing = {s.id for s in store.list_sweeps()}
    if spec.name in existing and spec.search is not None:
        if store.get_sweep(spec.name).spec != spec_text:
            raise AblateError(f"{sweep_dir} holds search `{spec.name}` from another spec; use another --out")
    elif spec.name in existing:
        # Rescue branches are registered as their parents stop: they are not the spec's own trials.
        known = {t.id for t in store.list_trials(spec.name) if t.parent is None}
        wanted = {t.id for t in trials}
        if known != wanted:
            raise AblateError(
                f"{sweep_dir} holds sweep `{spec.name}` with other trials ({len(wanted - known)} new, "
                f"{len(known - wanted)} missing): the spec changed since it started; use another --out"
            )
    else:
        store.create_sweep(spec.name, spec_text, sweep_id=spec.name)
        folder.spec.write_text(spec_text)
    store.create_trials(spec.name, trials)
    return store, trials


def tune_environment() -> None:
    """Set what Tune reads from the driver's environment (a value the user set is kept)."""
    # Tune's console output is replaced by ablate's own progress view (the legacy reporter honours verbose=0).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A trial reports what it knows: no ASHA signal while its objective is NaN, nothing at all when a collapse stops
    # it before its first eval. Tune's strict check would end the whole sweep on such a result (it even counts a
    # search's flattened config as reported metrics); its schedulers and OptunaSearch skip a result that lacks
    # their metric.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")


def run_sweep(
    spec: SweepSpec,
    spec_text: str,
    sweep_dir: Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    poll_s: float = 0.5,
    on_start: Callable[[SQLiteStore], None] | None = None,
    rescue: RescueRequest | None = None,
) -> SweepOutcome:
    """Run (or resume) every trial of a sweep on Ray Tune; return when all have ended or the run is interrupted.

    Args:
        spec: The validated spec.
        spec_text: Its text, kept in the store and in `<sweep_dir>/spec.yaml`.
        sweep_dir: Where the store, the trials' directories and Tune's state go. If it holds this sweep already,
            the sweep resumes: finished trials are not rerun, the others resume from their latest checkpoints.
        address: An existing Ray cluster; None starts a local one.
        num_cpus, num_gpus: The local cluster's CPUs and (possibly logical) GPUs; None lets Ray detect them.
        poll_s: How often a trial reads its metrics file.
        on_start: Called with the store once trials are registered (e.g. to start a progress display).
        rescue: Branch these finished trials of the sweep in `sweep_dir` (`ablate rescue`) instead of running its
            trials; its own Tune experiment, so that running the same rescue again resumes it.
    """
    tune_environment()
    check_target(spec, sweep_dir)
    if rescue is None:
        store, trials = prepare_sweep(spec, spec_text, sweep_dir)
    else:
        store, trials = SQLiteStore(SweepDir(sweep_dir).require().db), []
    settings = SweepSettings.from_spec(spec, sweep_dir, poll_s=poll_s)
    resources = _start_ray(address, num_cpus, num_gpus)
    if spec.cluster == "local":
        _check_capacity(spec, resources)
    for record in store.list_trials(spec.name):
        if record.status not in TERMINAL and (rescue is None or record.parent in rescue.parents):
            store.set_trial_status(record.id, "queued")
    store.set_sweep_status(spec.name, "running")
    if on_start is not None:
        on_start(store)
    callback = StoreCallback(settings, max_steps=spec.budget.max_steps)
    tuner = _tuner(spec, settings, trials, callback, rescue)
    interrupted = False
    try:
        tuner.fit()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        interrupted = _settle(store, spec.name, settings, interrupted or callback.interrupted)
    return SweepOutcome(
        sweep_dir=sweep_dir,
        counts=store.summary(spec.name),
        interrupted=interrupted,
        failed=store.list_trials(spec.name, status="failed"),
    )


def _start_ray(address: str | None, num_cpus: int | None, num_gpus: int | None) -> dict[str, float]:
    """Start (or join) the Ray cluster the sweep runs on; return its resources."""
    import logging

    import ray

    # Ray says at start-up that token authentication is on (good news, not an action item): keep the console quiet.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if not ray.is_initialized():
        own = address in (None, "local")
        ray.init(
            # "local": always a new cluster of our own; a bare ray.init() would join one that `ray start` left running.
            address="local" if own else address,
            num_cpus=num_cpus if own else None,
            num_gpus=num_gpus if own else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": {"TUNE_FUNCTION_THREAD_TIMEOUT_S": os.environ.get("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(TRIAL_END_WAIT_S))}},
        )
    return ray.cluster_resources()


@dataclass(frozen=True)
class RescueRequest:
    """`ablate rescue`: branch these stopped trials of a finished sweep with these remedies."""

    parents: tuple[str, ...]
    remedies: tuple[Remedy, ...]
    how: str = "best"

    @property
    def experiment(self) -> str:
        """The Tune experiment's name: the same request resumes the same experiment."""
        key = json.dumps([sorted(self.parents), [r.overrides for r in self.remedies], self.how], sort_keys=True, default=str)
        return "rescue-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def _rescue_searcher(spec: SweepSpec, settings: SweepSettings, trials: list[Trial], rescue: RescueRequest | None) -> Any:
    """Return the searcher that hands out the trials and then their rescue branches, or None for a plain grid."""
    if rescue is None and spec.pruning.rescue is None:
        return None
    from orchestrator.engine._rescue_search import RescueSearcher

    if rescue is not None:
        return RescueSearcher(settings, [], rescue.parents, rescue.remedies, rescue.how)
    plan = spec.pruning.rescue
    assert plan is not None
    ids = [t.id for t in trials]
    return RescueSearcher(settings, ids, ids, plan.parsed(), plan.from_)


def _tuner(spec: SweepSpec, settings: SweepSettings, trials: list[Trial], callback: Any, rescue: RescueRequest | None = None) -> Any:
    """Return the Tune experiment of the sweep: restored from the sweep folder if it was started before."""
    from ray import tune

    max_concurrent = spec.execution.max_concurrent_trials
    if settings.slurm is None:
        resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus * spec.resources.nodes}
    else:
        # On Slurm a Tune trial is a light proxy: it submits and follows the job, holding no GPU here. How many
        # jobs run at once is Slurm's decision (they queue); `max_jobs` caps how many are submitted at once.
        resources = {"cpu": PROXY_CPUS}
        max_jobs = spec.cluster.slurm.max_jobs  # type: ignore[union-attr]
        caps = [c for c in (max_concurrent, max_jobs) if c is not None]
        max_concurrent = min(caps) if caps else len(trials)
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings), resources)
    folder = settings.folder
    name = folder.experiment_name if rescue is None else rescue.experiment
    experiment = folder.tune_storage / name
    if tune.Tuner.can_restore(str(experiment)):
        return tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=False)
    search_alg, param_space, num_samples = None, {"trial_id": tune.grid_search([t.id for t in trials])}, 1
    searcher = _rescue_searcher(spec, settings, trials, rescue)
    if searcher is not None:
        # The trials first, then each stopped trial's branches as it stops (at most one per parent and remedy).
        n_remedies = len(rescue.remedies) if rescue is not None else len(spec.pruning.rescue.remedies)  # type: ignore[union-attr]
        n_parents = len(rescue.parents) if rescue is not None else len(trials)
        search_alg, param_space, num_samples = searcher, {}, len(trials) + n_parents * n_remedies
    elif spec.search is not None:
        from orchestrator.search import optuna_searcher

        # Optuna samples each trial's overrides; the trial function registers it (its id: the usual hash).
        search_alg, param_space, num_samples = optuna_searcher(spec), {}, spec.search.num_samples
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            scheduler=_scheduler(spec, settings, trials),
            search_alg=search_alg,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,  # a trial's worker process serves the next trial: no process start per trial
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(folder.tune_storage),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.execution.max_failures),
            callbacks=[callback],
        ),
    )


def _scheduler(spec: SweepSpec, settings: SweepSettings, trials: list[Trial]) -> Any:
    """Return the Tune scheduler of `pruning.asha`: none (FIFO), ASHA, or seed-aware ASHA."""
    asha = spec.pruning.asha
    if asha is None:
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
    if asha.by == "seed_mean":
        from orchestrator.tune_schedulers import SeedMeanScheduler

        # Seed-aware ASHA: a configuration is judged on the mean over its seeds; its seeds stop together.
        return SeedMeanScheduler(
            time_attr="step",
            metric=SIGNAL,
            mode=spec.objective.mode,
            max_t=spec.budget.max_steps + 1,
            grace_steps=asha.grace_steps,
            reduction_factor=asha.reduction_factor,
            groups={t.id: t.point for t in trials},
            recorded=RecordedSignals(settings),
        )
    from orchestrator.tune_schedulers import ResumingASHA

    return ResumingASHA(
        recorded=RecordedSignals(settings),
        time_attr="step",
        metric=SIGNAL,
        mode=spec.objective.mode,
        # One past the budget: ASHA never stops a trial for reaching the end; the trial ends by itself.
        max_t=spec.budget.max_steps + 1,
        grace_period=asha.grace_steps,
        reduction_factor=asha.reduction_factor,
        brackets=asha.brackets,
    )


def _check_capacity(spec: SweepSpec, available: dict[str, float]) -> None:
    """Refuse a sweep whose single trial cannot fit the cluster: it would wait forever."""
    need_gpus = spec.resources.gpus * spec.resources.nodes
    if need_gpus > available.get("GPU", 0):
        raise AblateError(
            f"each trial needs {need_gpus} GPU(s) (resources.gpus) but the Ray cluster has "
            f"{available.get('GPU', 0):g}; use a GPU cluster (--address), or declare logical GPUs with --gpus"
        )
    if spec.resources.cpus > available.get("CPU", 0):
        raise AblateError(
            f"each trial needs {spec.resources.cpus:g} CPU(s) (resources.cpus) but the Ray cluster has "
            f"{available.get('CPU', 0):g}; lower resources.cpus or use --cpus / a larger cluster"
        )


def _settle(store: SQLiteStore, sweep_id: str, settings: SweepSettings, interrupted: bool) -> bool:
    """After Tune returns: stop leftovers, keep every trial's best checkpoint, mark what did not finish."""
    unfinished = False
    launcher = settings.launcher()
    for record in store.list_trials(sweep_id):
        # A trainer whose worker died (or a Slurm job whose follower did) may still run.
        launcher.release(started(store, record.id), settings.workdir(record.name))
        _final_checkpoints(store, settings, record)
        if record.status not in TERMINAL:
            unfinished = True
            store.set_trial_status(record.id, "pending")
            store.append_event(record.id, "interrupted")
    status = "pending" if unfinished else "completed"
    store.set_sweep_status(sweep_id, status)
    return interrupted or unfinished


def _final_checkpoints(store: SQLiteStore, settings: SweepSettings, record: Any) -> None:
    """Make sure a trial stopped from outside (ASHA, interrupt) has its best checkpoint kept and the rest deleted."""
    checkpoint_dir = settings.workdir(record.name) / "checkpoints"
    if not checkpoint_dir.is_dir():
        return
    keeper = settings.keeper(record.name)
    history = store.get_history(record.id)
    objective = resolve_objective(settings.objective, history, finished=True, eval_sizes=settings.eval_sizes)[0]
    for point in history:
        keeper.observe(point.step, point.get(objective) if objective else None)
    try:
        record_checkpoints(store, record.id, keeper.sweep())
    except OSError as exc:
        store.append_event(record.id, "checkpoint_error", data={"error": str(exc)})
