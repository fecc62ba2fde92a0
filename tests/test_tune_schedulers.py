"""The schedulers across a resume: Tune restores an experiment with its scheduler as created (empty); ablate's
re-record what the restored trials reported before, from the sweep's store (`orchestrator.engine.RecordedSignals`).

Real Tune `Trial` objects and scheduler classes, a real SQLite store; the hooks are called as Tune's controller
calls them on a restore (`on_trial_add` for every trial, finished ones included, then live results).
"""

from __future__ import annotations

import pickle
from pathlib import Path

from ray.tune.experiment import Trial as TuneTrial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from orchestrator.design import Trial
from orchestrator.engine import SIGNAL, RecordedSignals as _RecordedSignals, SweepSettings
from orchestrator.history import StepMetrics
from orchestrator.store import SQLiteStore
from orchestrator.tune_schedulers import ResumingASHA, SeedMeanScheduler

OBJ = "val-core/mini/reward/mean@1"


def _settings(tmp_path: Path, signal: str = "best") -> SweepSettings:
    return SweepSettings(sweep_dir=str(tmp_path), project="p", backend="mini", objective=OBJ, mode="max", collapse=None, signal=signal)


def _store(tmp_path: Path, histories: dict[str, list[float]], seeds: dict[str, tuple[str, int]] | None = None) -> None:
    """A sweep whose trials logged `histories` (objective at evals 5, 10, 15, ...; training metrics in between)."""
    seeds = seeds or {tid: (tid, 1) for tid in histories}
    with SQLiteStore(tmp_path / "sweep.db") as store:
        store.create_sweep("resume", "name: resume\n")
        store.create_trials(
            "resume",
            [Trial(id=tid, name=f"{point}_s{seed}", point=point, levels={}, values={}, seed=seed, overrides={}) for tid, (point, seed) in seeds.items()],
        )
        for tid, scores in histories.items():
            points = [StepMetrics(step=5 * k + 1, metrics={"actor/entropy": 0.5}) for k in range(len(scores))]
            points += [StepMetrics(step=5 * (k + 1), metrics={OBJ: score}) for k, score in enumerate(scores)]
            store.append_metrics(tid, points)


def _tune_trial(trial_id: str, status: str = TuneTrial.PENDING) -> TuneTrial:
    trial = TuneTrial("run_trial", config={"trial_id": trial_id}, stub=True)
    trial.set_status(status)
    return trial


def test_recorded_signals_recompute_what_the_trial_reported(tmp_path: Path) -> None:
    _store(tmp_path, {"a": [1.0, 3.0, 2.0, float("nan")]})
    best = _RecordedSignals(_settings(tmp_path))
    assert best("a") == [{"step": 5, SIGNAL: 1.0}, {"step": 10, SIGNAL: 3.0}, {"step": 15, SIGNAL: 3.0}, {"step": 20, SIGNAL: 3.0}]
    ema = _RecordedSignals(_settings(tmp_path, signal="ema"))  # alpha 0.5, NaN skipped, as TrialRun's signal
    assert [r[SIGNAL] for r in ema("a")] == [1.0, 2.0, 2.0, 2.0]
    assert best("unknown") == []
    assert _RecordedSignals(_settings(tmp_path / "none"))("a") == []  # no store yet: a fresh sweep


def test_recorded_signals_of_a_collapsed_trial_end_before_its_collapse(tmp_path: Path) -> None:
    _store(tmp_path, {"c": [2.0, 3.0, 1.0, 0.5]})
    with SQLiteStore(tmp_path / "sweep.db") as store:
        store.set_trial_stop("c", "collapse:score_drop", step=15, evidence={})
    # The trial reported the evals before its collapse step (TrialRun holds back the rest), so a resume replays those.
    assert _RecordedSignals(_settings(tmp_path))("c") == [{"step": 5, SIGNAL: 2.0}, {"step": 10, SIGNAL: 3.0}]


def _asha(recorded: _RecordedSignals | None) -> AsyncHyperBandScheduler:
    args = {"time_attr": "step", "metric": SIGNAL, "mode": "max", "max_t": 41, "grace_period": 10, "reduction_factor": 2}
    return ResumingASHA(recorded=recorded, **args) if recorded is not None else AsyncHyperBandScheduler(**args)


def test_resumed_asha_judges_a_restored_trial_against_the_rungs_of_before(tmp_path: Path) -> None:
    # Before the driver died: `strong` had finished (rungs 10, 20, 40 recorded); `weak` had reached step 5.
    _store(tmp_path, {"strong": [2.0, 2.5, 2.6, 2.7, 2.8, 2.8, 2.9, 2.9], "weak": [1.0]})
    # Tune pickles the scheduler with the experiment and restores it from there.
    restored = pickle.loads(pickle.dumps(_asha(_RecordedSignals(_settings(tmp_path)))))
    restored.on_trial_add(None, _tune_trial("strong", TuneTrial.TERMINATED))
    weak = _tune_trial("weak")
    restored.on_trial_add(None, weak)
    assert restored.on_trial_result(None, weak, {"step": 10, SIGNAL: 1.1}) == TrialScheduler.STOP
    # Tune's own ASHA, restored empty, lets the weak trial through: nothing is recorded at rung 10.
    plain = _asha(None)
    plain.on_trial_add(None, _tune_trial("strong", TuneTrial.TERMINATED))
    weak = _tune_trial("weak")
    plain.on_trial_add(None, weak)
    assert plain.on_trial_result(None, weak, {"step": 10, SIGNAL: 1.1}) == TrialScheduler.CONTINUE


def test_resumed_seed_mean_scheduler_stops_a_dominated_configuration(tmp_path: Path) -> None:
    seeds = {"g1": ("good", 1), "g2": ("good", 2), "w1": ("weak", 1), "w2": ("weak", 2)}
    _store(tmp_path, {"g1": [2.0, 2.5], "g2": [2.1, 2.4], "w1": [1.0, 1.2]}, seeds)

    def scheduler(recorded: _RecordedSignals | None) -> SeedMeanScheduler:
        return SeedMeanScheduler(
            time_attr="step",
            metric=SIGNAL,
            mode="max",
            max_t=41,
            grace_steps=10,
            reduction_factor=2,
            groups={tid: point for tid, (point, _) in seeds.items()},
            recorded=recorded,
        )

    for recorded, expected in ((_RecordedSignals(_settings(tmp_path)), TrialScheduler.STOP), (None, TrialScheduler.CONTINUE)):
        restored = pickle.loads(pickle.dumps(scheduler(recorded)))
        # `good` finished its rung 10 before the driver died; `w1` was past it, `w2` had not started.
        restored.on_trial_add(None, _tune_trial("g1", TuneTrial.TERMINATED))
        restored.on_trial_add(None, _tune_trial("g2", TuneTrial.TERMINATED))
        restored.on_trial_add(None, _tune_trial("w1"))
        w2 = _tune_trial("w2")
        restored.on_trial_add(None, w2)
        # w2 reaches rung 10: `weak` completes it with mean (1.2 + 1.1) / 2 < good's 2.45 and is stopped.
        assert restored.on_trial_result(None, w2, {"step": 10, SIGNAL: 1.1}) == expected
