"""The engine: one Ray Tune experiment per sweep.

Each Tune trial runs `run_trial`, which launches the trainer through the local launcher, tails its metrics file,
writes every step to the sweep store, runs the collapse rules on every step, keeps the best checkpoint, and reports
a noise-robust signal of the objective to Tune at each eval step (for ASHA). A collapse stops the trainer and
returns (it is not an error); a crash raises, so that Tune retries and the trainer resumes from its latest
checkpoint. ASHA's stops, retries and final failures are recorded by a driver-side callback.

Ray is imported inside the functions that need it: this module is the one adapter between ablate and Ray.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.checkpoints import CheckpointKeeper, SweepResult
from orchestrator.collapse import CollapseConfig, Verdict, build_rules, collapse_walk, first_verdict
from orchestrator.design import Trial, expand
from orchestrator.errors import AblateError
from orchestrator.history import Point, default_objective, is_validation_metric, merge_points
from orchestrator.launchers import LocalLauncher, Status
from orchestrator.launchers.slurm import SlurmLauncher, SlurmOptions, cancel_alive, check_sbatch, check_slurm_path
from orchestrator.readers import JsonlTail, read_jsonl
from orchestrator.search import BEST, search_template
from orchestrator.spec import SweepSpec
from orchestrator.store import SQLiteStore, TrialRecord
from orchestrator.trainers import RunContext, get_trainer

DB_NAME = "sweep.db"
SPEC_NAME = "spec.yaml"
TUNE_DIR = "tune"
EXPERIMENT = "experiment"
SIGNAL = "signal"
STORE_ID = "ablate_trial_id"
"""The result key that carries a trial's store id (Tune fills `trial_id` with its own)."""
"""The metric reported to Tune for ASHA: best-so-far or an EMA of the objective (never NaN)."""
TERMINAL = ("completed", "stopped", "failed", "cancelled")
PROXY_CPUS = 0.01
"""The CPU share of a Tune trial that only follows a Slurm job (Tune needs some resource per trial)."""
TRIAL_END_WAIT_S = 180
"""How long Tune waits for a stopped trial's function to return before handing its worker to the next trial.

Tune's own wait (`TUNE_FUNCTION_THREAD_TIMEOUT_S`, 2 s by default) is shorter than a stop takes: the function first
stops its trainer (up to `stop_grace_s`, then SIGKILL) or waits for its cancelled Slurm job to leave the queue (up
to 60 s). Past the wait the reuse fails, and Tune (2.60) then leaves the next trial pending for ever.
"""


class TrialFailed(AblateError):
    """A trainer attempt exited with an error; Tune retries the trial while failures remain."""


@dataclass(frozen=True)
class SweepSettings:
    """What every trial worker needs to know about its sweep (picklable; given to Tune with the trainable)."""

    sweep_dir: str
    project: str
    backend: str
    objective: str
    mode: str
    collapse: dict[str, Any] | None
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

    @property
    def db_path(self) -> Path:
        """Return the sweep store's path."""
        return Path(self.sweep_dir) / DB_NAME

    def workdir(self, trial_name: str) -> Path:
        """Return a trial's directory."""
        return Path(self.sweep_dir) / "trials" / trial_name

    @classmethod
    def from_spec(cls, spec: SweepSpec, sweep_dir: Path, *, poll_s: float = 0.5) -> SweepSettings:
        """Return the settings of a sweep run from `spec` in `sweep_dir`."""
        asha = spec.pruning.asha
        wandb = spec.tracking.wandb
        return cls(
            sweep_dir=str(sweep_dir.absolute()),
            project=spec.name,
            backend=spec.trainer.backend,
            objective=spec.objective.metric,
            mode=spec.objective.mode,
            collapse=None if spec.pruning.collapse is None else spec.pruning.collapse.model_dump(),
            signal=asha.signal if asha else "best",
            ema_alpha=asha.ema_alpha if asha else 0.5,
            poll_s=poll_s,
            search_template=None if spec.search is None else search_template(spec),
            wandb=None if wandb is None or wandb.mode == "disabled" else wandb.model_dump(),
            slurm=None if spec.cluster == "local" else SlurmOptions.from_spec(spec),
            requeue=True if spec.cluster == "local" else spec.cluster.slurm.requeue,
            slurm_poll_s=min(5.0, max(poll_s, 1.0)),
        )


# ------------------------------------------------------------------------------------------------ the trial side


class _Signal:
    """The objective as ASHA sees it: best so far, or an exponential moving average; NaN is skipped."""

    def __init__(self, kind: str, mode: str, alpha: float) -> None:
        self._kind, self._mode, self._alpha = kind, mode, alpha
        self.value: float | None = None

    def update(self, score: float) -> float | None:
        if not math.isfinite(score):
            return self.value
        if self.value is None:
            self.value = score
        elif self._kind == "ema":
            self.value = self._alpha * score + (1 - self._alpha) * self.value
        else:
            self.value = max(self.value, score) if self._mode == "max" else min(self.value, score)
        return self.value


def _history_objective(settings: SweepSettings, history: Sequence[Point]) -> str:
    """Return the metric a stored history is judged by: the spec's, or (`auto`) the first validation metric logged."""
    if settings.objective != "auto":
        return settings.objective
    return default_objective(sorted({k for p in history for k in p.metrics})) or ""


@dataclass(frozen=True)
class _RecordedSignals:
    """Trial id -> the results it reported to the scheduler, recomputed from the store (for a resumed sweep).

    Each eval point with a finite objective gives `{"step", SIGNAL}`, the signal updated as `TrialRun` updates it;
    a trial a collapse rule stopped reported only the evals before the collapse step. Picklable: Tune keeps the
    scheduler that holds it with the experiment.
    """

    settings: SweepSettings

    def __call__(self, trial_id: str) -> list[dict[str, Any]]:
        if not self.settings.db_path.exists():
            return []
        with SQLiteStore(self.settings.db_path) as store:
            try:
                history = store.get_history(trial_id)
                record = store.get_trial(trial_id)
            except KeyError:
                return []
        if (record.stop_reason or "").startswith("collapse:") and record.stop_step is not None:
            history = [point for point in history if point.step < record.stop_step]
        objective = _history_objective(self.settings, history)
        signal = _Signal(self.settings.signal, self.settings.mode, self.settings.ema_alpha)
        results = []
        for point in history:
            score = point.get(objective)
            value = None if score is None else signal.update(score)
            if value is not None:
                results.append({"step": point.step, SIGNAL: value})
        return results


class TrialRun:
    """One attempt of one trial: launch, tail, judge, keep checkpoints, report; used inside a Tune trial.

    Args:
        settings: The sweep's settings.
        trial_id: The trial to run (its record is in the store).
        report: Called with a metrics dict at each eval step (Tune's `tune.report` in a sweep).
        gpus: The GPU ids Ray assigned to the trial (None: leave CUDA_VISIBLE_DEVICES as it is).
        stop_requested: Polled while the trainer runs; True when Tune has decided to stop the trial (ASHA, the end
            of the experiment). The attempt then stops its trainer (or cancels its Slurm job) at once and exits as
            Tune's own report would at the next eval (SystemExit), instead of training on until then.
    """

    def __init__(
        self,
        settings: SweepSettings,
        trial_id: str,
        *,
        report: Callable[[dict[str, Any]], None],
        gpus: Sequence[int | str] | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:
        self._stop_requested = stop_requested or (lambda: False)
        self._settings = settings
        self._store = SQLiteStore(settings.db_path)
        self._record = self._store.get_trial(trial_id)
        self._report = report
        self._gpus = gpus
        self._objective: str | None = None if settings.objective == "auto" else settings.objective
        self._rules: list[Any] | None = None
        self._signal = _Signal(settings.signal, settings.mode, settings.ema_alpha)
        self._best_so_far = _Signal("best", settings.mode, 1.0)
        self._history: dict[int, Point] = {}
        self._best: tuple[int, float] | None = None
        self._wandb: Any = None

    def run(self) -> str:
        """Run the attempt to its end; return the trial's stop reason.

        Raises:
            TrialFailed: If the trainer exits with an error (Tune then retries).
            LaunchError: If the trainer cannot be started.
        """
        record = self._record
        # A trial that already ended (a restored experiment re-running it) is not run again.
        if record.status in TERMINAL and record.stop_reason != "failed":
            self._store.close()
            return record.stop_reason or record.status
        attempt = record.attempts
        self._store.set_trial_attempts(record.id, attempt + 1)
        self._store.clear_trial_stop(record.id, status="running")
        trial = _trial_of(record)
        ctx = RunContext(workdir=self._settings.workdir(record.name), project=self._settings.project, attempt=attempt)
        keeper = CheckpointKeeper(ctx.checkpoint_dir, mode=self._settings.mode)  # type: ignore[arg-type]
        self._resume_history(ctx, keeper)
        slurm = self._settings.slurm
        options: dict[str, Any] = {}
        if slurm is not None and slurm.nodes > 1 and self._settings.backend == "verl":
            options["private_ray"] = False  # verl joins the Ray cluster the job starts over its nodes
        command = get_trainer(self._settings.backend, **options).command(trial, ctx)
        launcher: Any
        if slurm is None:
            launcher = LocalLauncher(grace_s=self._settings.stop_grace_s)
        else:
            # A job of an earlier attempt may outlive the driver that submitted it: never run two at once.
            cancel_alive(_job_ids(self._store, record.id))
            launcher = SlurmLauncher(slurm, state_poll_s=self._settings.slurm_poll_s)
        handle = launcher.start(command, ctx.workdir, attempt=attempt, gpus=self._gpus)
        self._store.append_event(
            record.id,
            "started",
            attempt=attempt,
            data={**launcher.describe(handle), "gpus": list(self._gpus or []), "argv": list(command.argv)},
        )
        try:
            self._open_wandb(trial)
            return self._follow(launcher, handle, ctx, keeper, attempt)
        finally:
            launcher.stop(handle)
            if self._wandb is not None:
                self._wandb.finish()
            self._store.close()

    # ---- following the trainer -------------------------------------------------------------------------------

    def _follow(self, launcher: Any, handle: str, ctx: RunContext, keeper: CheckpointKeeper, attempt: int) -> str:
        tail = JsonlTail(ctx.metrics_path)
        shown: tuple[Status, str] | None = None
        while True:
            state = launcher.poll(handle)
            shown = self._show_queue_state(state, shown, attempt)
            if self._stop_requested() or self._stopped_by_scheduler():
                self._take(tail.poll(), keeper)
                raise SystemExit(0)  # the caller's `finally` stops the trainer; Tune ends the trial as it would
            verdict = self._take(tail.poll(), keeper)
            if verdict is not None:
                launcher.stop(handle)
                self._sweep_checkpoints(keeper)
                return self._stop_for_collapse(verdict)
            if not state.status.done:
                # Wait for the next read, waking at once if the trainer exits meanwhile.
                launcher.wait(handle, timeout_s=self._settings.poll_s)
                continue
            # The trainer has exited: read what it wrote last, then judge how it ended.
            verdict = self._take(tail.poll(), keeper)
            self._sweep_checkpoints(keeper)
            if verdict is not None:
                return self._stop_for_collapse(verdict)
            if state.status is Status.INTERRUPTED:
                return self._interrupted(state, attempt)
            if state.status is Status.SUCCEEDED:
                last = max(self._history, default=None)
                self._store.set_trial_stop(self._record.id, "completed", step=last)
                self._store.append_event(self._record.id, "completed", attempt=attempt, data={"step": last})
                return "completed"
            tail_text = launcher.stderr_tail(handle)
            self._store.set_trial_stderr_tail(self._record.id, tail_text)
            log = launcher.log_paths(handle)[1]
            self._store.append_event(
                self._record.id, "failed", attempt=attempt, data={"exit_code": state.exit_code, "raw": state.raw, "log": str(log)}
            )
            self._store.set_trial_stop(
                self._record.id, "failed", step=max(self._history, default=None), evidence={"exit_code": state.exit_code, "log": str(log)}
            )
            last_lines = "\n".join(tail_text.splitlines()[-5:])
            raise TrialFailed(
                f"trial {self._record.name} ({self._record.id}) attempt {attempt}: trainer {state.raw}; "
                f"log: {log}\n{last_lines}"
            )

    def _stopped_by_scheduler(self) -> bool:
        """Return True if the driver has recorded this trial as stopped by the scheduler (ASHA) meanwhile."""
        return self._store.get_trial(self._record.id).stop_reason == "asha"

    def _show_queue_state(self, state: Any, shown: tuple[Status, str] | None, attempt: int) -> tuple[Status, str] | None:
        """Record a queued job (with the cluster's reason) and the moment it starts running."""
        if state.status not in (Status.PENDING, Status.RUNNING) or self._settings.slurm is None:
            return shown
        now = (state.status, state.raw)
        if now == shown:
            return shown
        if state.status is Status.PENDING:
            self._store.set_trial_status(self._record.id, "queued")
            self._store.append_event(self._record.id, "queued", attempt=attempt, data={"reason": state.raw})
        elif shown is None or shown[0] is not Status.RUNNING:
            self._store.set_trial_status(self._record.id, "running")
            self._store.append_event(self._record.id, "running", attempt=attempt, data={"state": state.raw})
        return now

    def _interrupted(self, state: Any, attempt: int) -> str:
        """The cluster ended the job (preemption, time limit, node failure): resubmit it, or end the trial."""
        step = max(self._history, default=None)
        data = {"raw": state.raw, "exit_code": state.exit_code, "step": step}
        self._store.append_event(self._record.id, "interrupted", attempt=attempt, data=data)
        if not self._settings.requeue:
            self._store.set_trial_stop(self._record.id, "failed", step=step, evidence={**data, "requeue": False})
            return "failed"
        self._store.set_trial_stop(self._record.id, "failed", step=step, evidence=data)
        raise TrialFailed(
            f"trial {self._record.name} ({self._record.id}) attempt {attempt}: Slurm job ended {state.raw}; "
            "resubmitting to resume from the latest checkpoint"
        )

    def _take(self, points: list[Point], keeper: CheckpointKeeper) -> Verdict | None:
        """Record new points: store, checkpoints, best, Tune reports; return a collapse verdict if a rule fires."""
        if not points:
            return None
        points = merge_points(points)
        self._store.append_metrics(self._record.id, points)
        eval_points = []
        for point in points:
            self._history[point.step] = _merged(self._history.get(point.step), point)
            self._resolve_objective(point)
            score = point.get(self._objective) if self._objective else None
            keeper.observe(point.step, score)
            if score is not None:
                eval_points.append((point.step, score))
            self._log_wandb(point)
        self._sweep_checkpoints(keeper)
        for step, score in eval_points:
            self._note_best(step, score)
        verdict = self._judge()
        if verdict is not None:
            # Report what judging point by point would have let through, the evals before the point at which the
            # verdict first fires (as `ablate replay` does), however the trainer's points were batched when read.
            history = [self._history[step] for step in sorted(self._history)]
            new = min(point.step for point in points)
            found = collapse_walk(self._rules or [], history, next(i for i, p in enumerate(history) if p.step >= new))
            first = history[found[1]].step if found is not None else history[-1].step
            eval_points = [(step, score) for step, score in eval_points if step < first]
        for step, score in eval_points:
            self._report_eval(step, score)
        return verdict

    def _resolve_objective(self, point: Point) -> None:
        if self._objective is not None:
            return
        # `auto`: the first validation metric the trainer logs (val-core/<source>/<var>/mean@N).
        if any(is_validation_metric(key) for key in point.metrics):
            self._objective = default_objective(point.metrics)

    def _judge(self) -> Verdict | None:
        if self._settings.collapse is None or self._objective is None:
            return None
        if self._rules is None:
            config = CollapseConfig.model_validate(self._settings.collapse)
            self._rules = build_rules(config, self._objective, self._settings.mode)  # type: ignore[arg-type]
        history = [self._history[step] for step in sorted(self._history)]
        return first_verdict(self._rules, history)

    def _note_best(self, step: int, score: float) -> None:
        if not math.isfinite(score):
            return
        better = self._best is None or (score > self._best[1] if self._settings.mode == "max" else score < self._best[1])
        if better:
            self._best = (step, score)
            self._store.set_trial_best(self._record.id, step, score)

    def _report_eval(self, step: int, score: float) -> None:
        signal = self._signal.update(score)
        metrics: dict[str, Any] = {"step": step, "trial_name": self._record.name, STORE_ID: self._record.id}
        if math.isfinite(score):
            metrics["objective"] = score
        best = self._best_so_far.update(score)
        if best is not None:
            metrics[BEST] = best  # what a search's Optuna is told: the best so far, also for a pruned trial
        if signal is not None:
            metrics[SIGNAL] = signal  # NaN never reaches ASHA: the key is left out until there is a finite value
        self._report(metrics)

    def _stop_for_collapse(self, verdict: Verdict) -> str:
        reason = f"collapse:{verdict.rule}"
        evidence = {**verdict.evidence, "reason": verdict.reason}
        onset = verdict.evidence.get("onset_eval_step", verdict.evidence.get("onset_step", verdict.step))
        self._store.set_trial_stop(self._record.id, reason, step=verdict.step, evidence=evidence)
        self._store.set_trial_collapse(self._record.id, onset)
        self._store.append_event(self._record.id, "stopped", data={"reason": reason, "step": verdict.step, "why": verdict.reason})
        return reason

    # ---- checkpoints and resume -----------------------------------------------------------------------------

    def _sweep_checkpoints(self, keeper: CheckpointKeeper) -> None:
        try:
            result = keeper.sweep()
        except OSError as exc:
            self._store.append_event(self._record.id, "checkpoint_error", data={"error": str(exc)})
            return
        _record_checkpoints(self._store, self._record.id, result)

    def _resume_history(self, ctx: RunContext, keeper: CheckpointKeeper) -> None:
        """Load earlier attempts' points; drop those past the checkpoint the trainer resumes from."""
        latest = keeper.sweep().latest_step
        # What earlier attempts' trainers wrote after their worker died never reached the store: take it now.
        for earlier in range(self._record.attempts):
            path = RunContext(ctx.workdir, ctx.project, earlier).metrics_path
            if path.is_file():
                self._store.append_metrics(self._record.id, read_jsonl(path).points)
        if self._record.attempts > 0:
            self._store.delete_metrics(self._record.id, after_step=latest if latest is not None else -1)
            if latest is not None:
                self._store.append_event(self._record.id, "retried", attempt=self._record.attempts, data={"resume_step": latest})
        for point in self._store.get_history(self._record.id):
            self._history[point.step] = point
            self._resolve_objective(point)
            score = point.get(self._objective) if self._objective else None
            keeper.observe(point.step, score)
            if score is not None:
                self._note_best(point.step, score)
                self._signal.update(score)
                self._best_so_far.update(score)

    # ---- wandb -----------------------------------------------------------------------------------------------

    def _open_wandb(self, trial: Trial) -> None:
        cfg = self._settings.wandb
        if not cfg:
            return
        import wandb

        self._wandb = wandb.init(
            project=cfg["project"],
            entity=cfg.get("entity"),
            mode=cfg.get("mode", "offline"),
            group=self._settings.project,
            name=trial.name,
            id=f"{self._settings.project}-{trial.id}"[:64],
            resume="allow",
            dir=str(self._settings.workdir(trial.name)),
            tags=[f"{k}={v}" for k, v in trial.levels.items()] + [f"seed={trial.seed}"],
            config={**trial.overrides, "ablate/trial_id": trial.id, "ablate/levels": trial.levels},
            reinit="create_new",
        )
        self._wandb_step = max(self._history, default=-1)

    def _log_wandb(self, point: Point) -> None:
        if self._wandb is None or point.step <= self._wandb_step:
            return
        self._wandb.log(dict(point.metrics), step=point.step)
        self._wandb_step = point.step


def _merged(old: Point | None, new: Point) -> Point:
    return new if old is None else Point(new.step, {**old.metrics, **new.metrics})


def _job_ids(store: SQLiteStore, trial_id: str) -> list[str]:
    """Return the Slurm job ids of a trial's attempts (from its `started` events)."""
    return [str(e.data["job_id"]) for e in store.list_events(trial_id, kind="started") if e.data.get("job_id")]


def _trial_of(record: Any) -> Trial:
    return Trial(
        id=record.id,
        name=record.name,
        point=record.point,
        levels=record.levels,
        values=record.values,
        seed=record.seed,
        overrides=record.overrides,
    )


def _record_checkpoints(store: SQLiteStore, trial_id: str, result: SweepResult) -> None:
    if result.kept is not None and result.best_path is not None:
        store.set_checkpoint(trial_id, "best", result.kept, result.best_path)
        store.append_event(trial_id, "checkpoint_kept", data={"step": result.kept, "path": str(result.best_path)})
    if result.latest_step is not None and result.latest_path is not None:
        store.set_checkpoint(trial_id, "latest", result.latest_step, result.latest_path)
    if result.deleted:
        store.append_event(trial_id, "checkpoint_deleted", data={"steps": list(result.deleted)})


def run_trial(config: dict[str, Any], settings: SweepSettings) -> None:
    """The Tune function trainable: run one attempt of the trial `config["trial_id"]` (or of a search's sample)."""
    import ray
    from ray import tune

    trial_id = config.get("trial_id")
    report: Callable[[dict[str, Any]], None] = tune.report
    if trial_id is None:
        # A search's sample: `config` holds the sampled overrides. OptunaSearch reads `BEST` from every result,
        # so results without a finite best so far are held back (a sample that never reports one is told to
        # Optuna as pruned, without a value).
        trial_id = _register_search_trial(config, settings)

        def report_best(metrics: dict[str, Any]) -> None:
            if BEST in metrics:
                tune.report(metrics)

        report = report_best

    gpus = [str(g) for g in ray.get_gpu_ids()] if ray.is_initialized() else []
    TrialRun(settings, trial_id, report=report, gpus=gpus or None, stop_requested=_tune_stop_requested).run()


def _tune_stop_requested() -> bool:
    """Return True once Tune has asked this trial's function to stop (its session's stop event is set).

    Tune itself only acts on the request at the function's next `tune.report`, which for a trainer between two
    evals can be many minutes of GPU time away. The session is Ray's internal API: if it moves, this answers False
    and the trial stops at its next report, as before.
    """
    try:
        from ray.train._internal.session import get_session

        session = get_session()
        return bool(session is not None and session.stop_event.is_set())
    except (ImportError, AttributeError):
        return False


def _register_search_trial(config: dict[str, Any], settings: SweepSettings) -> str:
    """Turn a search's sampled overrides into its trial, register it in the store, and return its id."""
    from orchestrator.search import search_trial

    assert settings.search_template is not None
    trial = search_trial(settings.search_template, settings.backend, config)
    with SQLiteStore(settings.db_path) as store:
        if store.create_trials(settings.project, [trial]):
            store.set_trial_status(trial.id, "queued")
    return trial.id


# ----------------------------------------------------------------------------------------------- the driver side


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
    trials = expand(spec).trials if spec.search is None else []
    store = SQLiteStore(sweep_dir / DB_NAME)
    existing = {s.id for s in store.list_sweeps()}
    if spec.name in existing and spec.search is not None:
        if store.get_sweep(spec.name).spec != spec_text:
            raise AblateError(f"{sweep_dir} holds search `{spec.name}` from another spec; use another --out")
    elif spec.name in existing:
        known = {t.id for t in store.list_trials(spec.name)}
        wanted = {t.id for t in trials}
        if known != wanted:
            raise AblateError(
                f"{sweep_dir} holds sweep `{spec.name}` with other trials ({len(wanted - known)} new, "
                f"{len(known - wanted)} missing): the spec changed since it started; use another --out"
            )
    else:
        store.create_sweep(spec.name, spec_text, sweep_id=spec.name)
        (sweep_dir / SPEC_NAME).write_text(spec_text)
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
    """
    tune_environment()
    import logging

    # Ray says at start-up that token authentication is on (good news, not an action item): keep the console quiet.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)

    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    _check_target(spec, sweep_dir)
    store, trials = prepare_sweep(spec, spec_text, sweep_dir)
    settings = SweepSettings.from_spec(spec, sweep_dir, poll_s=poll_s)
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
    if spec.cluster == "local":
        _check_capacity(spec, ray.cluster_resources())
    pending = [t.id for t in trials if store.get_trial(t.id).status not in TERMINAL]
    for trial_id in pending:
        store.set_trial_status(trial_id, "queued")
    store.set_sweep_status(spec.name, "running")
    if on_start is not None:
        on_start(store)
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
    storage = (sweep_dir / TUNE_DIR).absolute()
    experiment = storage / EXPERIMENT
    callback = _StoreCallback(settings.db_path, slurm=settings.slurm is not None, max_steps=spec.budget.max_steps)
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        asha = spec.pruning.asha
        scheduler: Any = FIFOScheduler()
        if asha is not None and asha.by == "seed_mean":
            from orchestrator.tune_schedulers import SeedMeanScheduler

            # Seed-aware ASHA: a configuration is judged on the mean over its seeds; its seeds stop together.
            scheduler = SeedMeanScheduler(
                time_attr="step",
                metric=SIGNAL,
                mode=spec.objective.mode,
                max_t=spec.budget.max_steps + 1,
                grace_steps=asha.grace_steps,
                reduction_factor=asha.reduction_factor,
                groups={t.id: t.point for t in trials},
                recorded=_RecordedSignals(settings),
            )
        elif asha is not None:
            from orchestrator.tune_schedulers import ResumingASHA

            scheduler = ResumingASHA(
                recorded=_RecordedSignals(settings),
                time_attr="step",
                metric=SIGNAL,
                mode=spec.objective.mode,
                # One past the budget: ASHA never stops a trial for reaching the end; the trial ends by itself.
                max_t=spec.budget.max_steps + 1,
                grace_period=asha.grace_steps,
                reduction_factor=asha.reduction_factor,
                brackets=asha.brackets,
            )
        search_alg, param_space, num_samples = None, {"trial_id": tune.grid_search([t.id for t in trials])}, 1
        if spec.search is not None:
            from orchestrator.search import optuna_searcher

            # Optuna samples each trial's overrides; the trial function registers it (its id: the usual hash).
            search_alg, param_space, num_samples = optuna_searcher(spec), {}, spec.search.num_samples
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                scheduler=scheduler,
                search_alg=search_alg,
                num_samples=num_samples,
                max_concurrent_trials=max_concurrent,
                reuse_actors=True,  # a trial's worker process serves the next trial: no process start per trial
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=str(storage),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=spec.execution.max_failures),
                callbacks=[callback],
            ),
        )
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


def _check_target(spec: SweepSpec, sweep_dir: Path) -> None:
    """Refuse, before starting Ray or writing anything, a sweep that cannot run where its spec says."""
    if spec.cluster != "local":
        check_slurm_path(sweep_dir.absolute())
        check_sbatch(SlurmOptions.from_spec(spec))
        return
    if spec.resources.nodes > 1:
        raise AblateError(
            f"resources.nodes is {spec.resources.nodes}: on a Ray cluster each trial runs on one node; "
            "multi-node trials need Slurm"
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
    """After Tune returns: kill leftovers, keep every trial's best checkpoint, mark what did not finish."""
    unfinished = False
    for record in store.list_trials(sweep_id):
        _kill_leftovers(store, record.id, settings.workdir(record.name))
        if settings.slurm is not None:
            cancel_alive(_job_ids(store, record.id))
        _final_checkpoints(store, settings, record)
        if record.status not in TERMINAL:
            unfinished = True
            store.set_trial_status(record.id, "pending")
            store.append_event(record.id, "interrupted")
    status = "pending" if unfinished else "completed"
    store.set_sweep_status(sweep_id, status)
    return interrupted or unfinished


def _kill_leftovers(store: SQLiteStore, trial_id: str, workdir: Path) -> None:
    """Kill a trainer process group a dead trial worker left behind (belt and braces: the guard does it too).

    A recorded process group id may have been reused since, by anything: a group is killed only while its leader
    is still this trial's guard (its command line runs the guard on a trainer writing into `workdir`).
    """
    import signal

    for event in store.list_events(trial_id, kind="started"):
        pgid = event.data.get("pgid")
        if not pgid or not _is_guard_of(int(pgid), workdir):
            continue
        try:
            os.killpg(int(pgid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def _is_guard_of(pid: int, workdir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "_guard.py" in cmdline and str(workdir.absolute()) in cmdline


def _final_checkpoints(store: SQLiteStore, settings: SweepSettings, record: Any) -> None:
    """Make sure a trial stopped from outside (ASHA, interrupt) has its best checkpoint kept and the rest deleted."""
    checkpoint_dir = settings.workdir(record.name) / "checkpoints"
    if not checkpoint_dir.is_dir():
        return
    keeper = CheckpointKeeper(checkpoint_dir, mode=settings.mode)  # type: ignore[arg-type]
    history = store.get_history(record.id)
    objective = _history_objective(settings, history)
    for point in history:
        keeper.observe(point.step, point.get(objective))
    try:
        _record_checkpoints(store, record.id, keeper.sweep())
    except OSError as exc:
        store.append_event(record.id, "checkpoint_error", data={"error": str(exc)})


class _StoreCallback:
    """Tune callback (driver side): records ASHA stops (and cancels their Slurm jobs), retries and final failures."""

    def __new__(cls, db_path: Path, *, slurm: bool = False, max_steps: int | None = None) -> Any:  # a Tune Callback subclass, built lazily so Ray loads only when used
        from ray.tune import Callback

        class StoreCallback(Callback):
            def __init__(self) -> None:
                self.interrupted = False
                self._open: SQLiteStore | None = None

            @property
            def _store(self) -> SQLiteStore:
                if self._open is None:
                    self._open = SQLiteStore(db_path)
                return self._open

            def __getstate__(self) -> dict[str, Any]:
                # Tune saves callbacks with the experiment state: the open store stays out of it.
                return {**self.__dict__, "_open": None}

            def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                # A search trial's store id comes with its results (its config holds the sampled overrides).
                trial_id = trial.config.get("trial_id") or (trial.last_result or {}).get(STORE_ID)
                if trial_id is None:
                    return
                record = self._store.get_trial(trial_id)
                if record.status in TERMINAL:
                    return
                # The trial function did not record an end: Tune's scheduler (ASHA) stopped it.
                result = trial.last_result or {}
                step = result.get("step")
                if step is not None and max_steps is not None and step >= max_steps:
                    # Stopped at its last eval, the end of its budget: it was not cut short.
                    self._store.set_trial_stop(trial_id, "completed", step=step)
                    self._store.append_event(trial_id, "completed", data={"step": step, "stopped_by": "asha"})
                    return
                evidence = {"signal": result.get(SIGNAL), "objective": result.get("objective")}
                self._store.set_trial_stop(trial_id, "asha", step=step, evidence=evidence)
                self._store.append_event(trial_id, "stopped", data={"reason": "asha", "step": step})
                if slurm:
                    # Tune may end the trial's worker before its function can cancel the job: cancel it here.
                    # (Recorded first: a worker still following the job sees the stop before the cancellation.)
                    cancel_alive(_job_ids(self._store, trial_id))

            def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                trial_id = trial.config.get("trial_id") or (trial.last_result or {}).get(STORE_ID)
                if trial_id is not None:
                    self._store.append_event(trial_id, "retried", data={"by": "tune"})

            def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                trial_id = trial.config.get("trial_id") or (trial.last_result or {}).get(STORE_ID)
                if trial_id is None:
                    return  # a search trial that failed before its first report recorded its failure itself
                record = self._store.get_trial(trial_id)
                if record.stop_reason != "failed":
                    self._store.set_trial_stop(trial_id, "failed", step=record.last_step, evidence={"error": str(trial.error_file)})

            def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
                self.interrupted = any(t.status not in ("TERMINATED", "ERROR") for t in trials)

        return StoreCallback()


def trial_rows(store: SQLiteStore, sweep_id: str) -> list[dict[str, Any]]:
    """Return one JSON-ready row per trial: status, step, best, stop reason (for `ablate status` and progress)."""
    rows = []
    for r in store.list_trials(sweep_id):
        queue_reason = None
        if r.status == "queued":
            # A Slurm job waiting in the queue: Slurm's own reason (Resources, Priority, QOSMaxJobsPerUserLimit...).
            waits = store.list_events(r.id, kind="queued")
            queue_reason = waits[-1].data.get("reason") if waits else None
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "seed": r.seed,
                "levels": r.levels,
                "status": r.status,
                "step": r.last_step,
                "best_step": r.best_step,
                "best_score": r.best_score,
                "stop_reason": r.stop_reason,
                "stop_step": r.stop_step,
                "collapse_step": r.collapse_step,
                "attempts": r.attempts,
                "why": (r.stop_evidence or {}).get("reason"),
                "queue_reason": queue_reason,
            }
        )
    return rows


def progress_thread(store_path: Path, sweep_id: str, render: Callable[[list[dict[str, Any]]], None], stop: threading.Event, every_s: float = 1.0) -> threading.Thread:
    """Start a thread that reads the store every `every_s` and calls `render(rows)` until `stop` is set."""

    def loop() -> None:
        store = SQLiteStore(store_path)
        try:
            while not stop.is_set():
                render(trial_rows(store, sweep_id))
                stop.wait(every_s)
            render(trial_rows(store, sweep_id))
        finally:
            store.close()

    thread = threading.Thread(target=loop, name="ablate-progress", daemon=True)
    thread.start()
    return thread
