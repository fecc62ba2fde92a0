"""The engine's adapters to Ray Tune's driver side: the store callback and the signals a resumed scheduler re-reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.engine._settings import SIGNAL, STORE_ID, SweepSettings
from orchestrator.history import resolve_objective
from orchestrator.judge import Signal
from orchestrator.store import TERMINAL, SQLiteStore, started


@dataclass(frozen=True)
class RecordedSignals:
    """Trial id -> the results it reported to the scheduler, recomputed from the store (for a resumed sweep).

    Each eval point with a finite objective gives `{"step", SIGNAL}`, the signal updated as the trial's judge updates it;
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
        if record.parent is not None:
            return []  # a rescue branch reports nothing to the scheduler (its history starts as its parent's)
        if record.stop_reason is not None and record.stop_reason.is_collapse and record.stop_step is not None:
            history = [point for point in history if point.step < record.stop_step]
        objective = resolve_objective(self.settings.objective, history, eval_sizes=self.settings.eval_sizes)[0]
        signal = Signal(self.settings.signal, self.settings.mode, self.settings.ema_alpha)
        results = []
        for point in history:
            score = point.get(objective) if objective else None
            value = None if score is None else signal.update(score)
            if value is not None:
                results.append({"step": point.step, SIGNAL: value})
        return results


class StoreCallback:
    """Tune callback (driver side): records ASHA stops (and cancels their Slurm jobs), retries and final failures."""

    def __new__(cls, settings: SweepSettings, *, max_steps: int | None = None) -> Any:  # a Tune Callback subclass, built lazily so Ray loads only when used
        from ray.tune import Callback

        class StoreCallback(Callback):
            def __init__(self) -> None:
                self.interrupted = False
                self._open: SQLiteStore | None = None

            @property
            def _store(self) -> SQLiteStore:
                if self._open is None:
                    self._open = SQLiteStore(settings.db_path)
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
                launcher = settings.launcher()
                if launcher.detached:
                    # Tune may end the trial's worker before its function can cancel the job: cancel it here.
                    # (Recorded first: a worker still following the job sees the stop before the cancellation.)
                    launcher.release(started(self._store, trial_id), settings.workdir(record.name))

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
