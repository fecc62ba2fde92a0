"""The trial side of the engine: one attempt of one trial, inside a Tune trial's worker.

`run_trial` is the Tune function trainable. It runs `TrialRun`, which launches the trainer, tails its metrics
file, writes every step to the sweep store, hands the points to the trial's judge (`orchestrator.judge`), keeps
the best checkpoint, and reports the judge's signal to Tune at each eval step (for ASHA). A collapse stops the
trainer and returns (it is not an error); a crash raises, so that Tune retries and the trainer resumes from its
latest checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from orchestrator.checkpoints import CheckpointKeeper, KeptCheckpoints, read_latest_step
from orchestrator.collapse import Verdict
from orchestrator.design import Trial
from orchestrator.engine._settings import SIGNAL, STORE_ID, SweepSettings
from orchestrator.errors import AblateError
from orchestrator.history import StepMetrics, merge_points
from orchestrator.judge import EvalReport
from orchestrator.launchers import Launcher, Status
from orchestrator.readers import JsonlTail, read_jsonl
from orchestrator.rescue import branch_checkpoint
from orchestrator.search import BEST
from orchestrator.store import TERMINAL, SQLiteStore, StopReason, started
from orchestrator.trainers import RunContext


class TrialFailed(AblateError):
    """A trainer attempt exited with an error; Tune retries the trial while failures remain."""


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
        self._judge = settings.judge()
        self._objective_noted = False
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
        trial = record.trial()
        ctx = RunContext(workdir=self._settings.workdir(record.name), project=self._settings.project, attempt=attempt)
        keeper = self._settings.keeper(record.name)
        self._resume_history(ctx, keeper)
        if read_latest_step(ctx.checkpoint_dir) is None:
            # A rescue branch starts from (a copy of) its parent's checkpoint until it has one of its own.
            ctx = replace(ctx, resume_from=branch_checkpoint(self._store, record))
        command = self._settings.trainer().command(trial, ctx)
        launcher = self._settings.launcher()
        # A job of an earlier attempt may outlive the worker that started it: never run two at once.
        launcher.release(started(self._store, record.id), ctx.workdir)
        handle = launcher.start(command, ctx.workdir, attempt=attempt, gpus=self._gpus)
        self._store.append_event(
            record.id,
            "started",
            attempt=attempt,
            data={**launcher.describe(handle), "gpus": list(self._gpus or []), "argv": list(command.argv)},
        )
        if self._settings.slurm is not None:
            # A submitted job waits in Slurm's queue until it is scheduled, however briefly: record that at once,
            # since the first poll may already find it running. A wait that lasts is recorded with Slurm's reason.
            self._store.set_trial_status(record.id, "queued")
            self._store.append_event(record.id, "queued", attempt=attempt, data={"reason": "submitted"})
        try:
            self._open_wandb(trial)
            return self._follow(launcher, handle, ctx, keeper, attempt)
        finally:
            launcher.stop(handle)
            if self._wandb is not None:
                self._wandb.finish()
            self._store.close()

    # ---- following the trainer -------------------------------------------------------------------------------

    def _follow(self, launcher: Launcher, handle: str, ctx: RunContext, keeper: CheckpointKeeper, attempt: int) -> str:
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
                last = self._judge.last_step
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
                self._record.id, "failed", step=self._judge.last_step, evidence={"exit_code": state.exit_code, "log": str(log)}
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
        step = self._judge.last_step
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

    def _take(self, points: list[StepMetrics], keeper: CheckpointKeeper) -> Verdict | None:
        """Record new points: store, checkpoints, best, Tune reports; return a collapse verdict if a rule fires."""
        if not points:
            return None
        points = merge_points(points)
        self._store.append_metrics(self._record.id, points)
        judgement = self._judge.take(points)
        self._note_objective()
        self._note_warnings(judgement.warnings)
        for point, (step, score) in zip(points, judgement.scores, strict=True):
            keeper.observe(step, score)
            self._log_wandb(point)
        self._sweep_checkpoints(keeper)
        if judgement.best is not None:
            self._store.set_trial_best(self._record.id, *judgement.best)
        for report in judgement.reports:
            self._report_eval(report)
        return judgement.verdict

    def _note_warnings(self, warnings: tuple[Verdict, ...]) -> None:
        """Record each leading sign's first warning once per trial (an earlier attempt may have recorded it)."""
        if not warnings:
            return
        recorded = {e.data.get("rule") for e in self._store.list_events(self._record.id, kind="collapse_warning")}
        for warning in warnings:
            if warning.rule not in recorded:
                data = {"rule": warning.rule, "step": warning.step, "reason": warning.reason}
                self._store.append_event(self._record.id, "collapse_warning", data=data)

    def _note_objective(self) -> None:
        """Record, once per trial, which metric it is judged by and why (`ablate status` shows it)."""
        if self._objective_noted or self._judge.objective is None:
            return
        self._objective_noted = True
        if not self._store.list_events(self._record.id, kind="objective"):
            data = {"metric": self._judge.objective, "why": self._judge.objective_reason}
            self._store.append_event(self._record.id, "objective", data=data)

    def _report_eval(self, report: EvalReport) -> None:
        metrics: dict[str, Any] = {"step": report.step, "trial_name": self._record.name, STORE_ID: self._record.id}
        if math.isfinite(report.score):
            metrics["objective"] = report.score
        if report.best is not None:
            metrics[BEST] = report.best  # what a search's Optuna is told: the best so far, also for a pruned trial
        if report.signal is not None and self._record.parent is None:
            # A rescue branch is not ASHA's to compare: it starts mid-run, from another trial's checkpoint.
            metrics[SIGNAL] = report.signal  # NaN never reaches ASHA: the key is left out until there is a finite value
        self._report(metrics)

    def _stop_for_collapse(self, verdict: Verdict) -> str:
        reason = StopReason.collapse(verdict.rule)
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
        record_checkpoints(self._store, self._record.id, result)

    def _resume_history(self, ctx: RunContext, keeper: CheckpointKeeper) -> None:
        """Load earlier attempts' points; drop those past the checkpoint the trainer resumes from."""
        latest = keeper.sweep().latest_step
        # What earlier attempts' trainers wrote after their worker died never reached the store: take it now.
        for earlier in range(self._record.attempts):
            path = RunContext(ctx.workdir, ctx.project, earlier).metrics_path
            if path.is_file():
                self._store.append_metrics(self._record.id, read_jsonl(path).points)
        if self._record.attempts > 0:
            # A branch keeps its parent's history up to the step it branched at.
            floor = latest if latest is not None else (self._record.from_step if self._record.from_step is not None else -1)
            self._store.delete_metrics(self._record.id, after_step=floor)
            if latest is not None:
                self._store.append_event(self._record.id, "retried", attempt=self._record.attempts, data={"resume_step": latest})
        for step, score in self._judge.restore(self._store.get_history(self._record.id)):
            keeper.observe(step, score)
        if self._judge.best is not None:
            self._store.set_trial_best(self._record.id, *self._judge.best)

    # ---- wandb -----------------------------------------------------------------------------------------------

    def _open_wandb(self, trial: Trial) -> None:
        cfg = self._settings.wandb
        if not cfg:
            return
        import wandb

        from orchestrator.engine._wandb import wandb_init_kwargs

        workdir = self._settings.workdir(trial.name)
        self._wandb = wandb.init(**wandb_init_kwargs(cfg, sweep=self._settings.project, trial=trial, workdir=workdir))
        last = self._judge.last_step
        self._wandb_step = -1 if last is None else last

    def _log_wandb(self, point: StepMetrics) -> None:
        if self._wandb is None or point.step <= self._wandb_step:
            return
        self._wandb.log(dict(point.metrics), step=point.step)
        self._wandb_step = point.step


def record_checkpoints(store: SQLiteStore, trial_id: str, result: KeptCheckpoints) -> None:
    """Record in the store what a checkpoint keeper's sweep kept, moved and deleted."""
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
