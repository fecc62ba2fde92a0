"""What a trial reports to Tune, and that Tune takes what it is given.

A trial reports each eval (its ASHA signal, its best so far) until a collapse rule stops it. What it reports must
not depend on how the trainer's points were batched when the trial read them, and a result without a scheduler's
or a searcher's metric (a NaN objective so far, a search sample stopped before its first report) must not end the
sweep. Real SQLite store, real collapse rules, real Tune.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from orchestrator.checkpoints import CheckpointKeeper
from orchestrator.design import Trial
from orchestrator.engine import BEST, SIGNAL, SweepSettings, TrialRun, tune_environment
from orchestrator.history import StepMetrics
from orchestrator.store import SQLiteStore
from orchestrator.tune_schedulers import ResumingASHA

OBJ = "val-core/mini/reward/mean@1"


def _trial_run(tmp_path: Path, reports: list[dict[str, Any]]) -> tuple[TrialRun, CheckpointKeeper]:
    """A TrialRun of a one-trial sweep judged by the default collapse rules, its reports appended to `reports`."""
    settings = SweepSettings(sweep_dir=str(tmp_path), project="p", backend="mini", objective=OBJ, mode="max", collapse={})
    with SQLiteStore(settings.db_path) as store:
        store.create_sweep("s", "name: s\n")
        store.create_trials("s", [Trial(id="t", name="t_s1", point="t", levels={}, values={}, seed=1, overrides={})])
    run = TrialRun(settings, "t", report=reports.append)
    return run, CheckpointKeeper(tmp_path / "checkpoints", mode="max")


# Evals at 0, 5 and 10; the objective turns NaN at 10 (the non-finite rule fires there). Step 7: a training step.
HISTORY = [
    StepMetrics(step=0, metrics={OBJ: 1.0}),
    StepMetrics(step=5, metrics={OBJ: 2.0}),
    StepMetrics(step=7, metrics={"actor/entropy": 0.4}),
    StepMetrics(step=10, metrics={OBJ: math.nan}),
]


@pytest.mark.parametrize("batches", [[4], [1, 3], [2, 2], [1, 1, 1, 1]], ids=["all-at-once", "1+3", "2+2", "one-by-one"])
def test_a_trial_reports_the_evals_before_its_collapse_however_its_points_arrive(tmp_path: Path, batches: list[int]) -> None:
    reports: list[dict[str, Any]] = []
    run, keeper = _trial_run(tmp_path, reports)
    verdicts, start = [], 0
    for size in batches:
        verdicts.append(run._take(HISTORY[start : start + size], keeper))
        start += size
    fired = [v for v in verdicts if v is not None]
    assert [(v.rule, v.step) for v in fired] == [("non_finite", 10)]
    assert verdicts[-1] is fired[0]
    # The evals at 0 and 5 reached Tune (signal and best so far), whether or not the NaN came in the same batch.
    assert [(r["step"], r[SIGNAL], r[BEST]) for r in reports] == [(0, 1.0, 1.0), (5, 2.0, 2.0)]


def _trial(config: dict[str, Any]) -> None:
    """Reports as ablate's trials make them: a grid trial whose objective is NaN so far reports no signal; a search
    sample reports only once it has a best so far, so one stopped before its first eval reports nothing."""
    if "trial_id" in config:
        x = 0.7 if config["trial_id"] == "a" else 0.9
        tune.report({"step": 5, "trial_name": config["trial_id"]})  # NaN so far: no signal, no best
    else:
        x = config["x"]
        if x < 0.5:
            return  # stopped before its first eval was reported
    tune.report({"step": 10, SIGNAL: x, BEST: x})


@pytest.mark.parametrize("strict", [False, True], ids=["ablate's-setting", "tune's-default"])
@pytest.mark.parametrize("kind", ["grid", "search"])
def test_results_without_the_schedulers_metric_do_not_end_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, strict: bool
) -> None:
    monkeypatch.delenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", raising=False)
    if not strict:
        tune_environment()
    asha = ResumingASHA(time_attr="step", metric=SIGNAL, mode="max", max_t=10, grace_period=5, reduction_factor=2)
    searcher = OptunaSearch(metric=BEST, mode="max", seed=0)
    if kind == "grid":
        space, config = {"trial_id": tune.grid_search(["a", "b"])}, tune.TuneConfig(scheduler=asha, max_concurrent_trials=1)
    else:
        space = {"x": tune.uniform(0.0, 1.0), "y": tune.uniform(0.0, 1.0)}
        config = tune.TuneConfig(scheduler=asha, search_alg=searcher, num_samples=6, max_concurrent_trials=1)
    tuner = tune.Tuner(_trial, param_space=space, tune_config=config, run_config=tune.RunConfig(storage_path=str(tmp_path), name="e", verbose=0))
    # The workers get the trainable by value: they cannot import a test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=1, include_dashboard=False, address="local")
    try:
        if strict:
            # Tune's own check ends the whole run at the first such result.
            with pytest.raises(Exception, match="did not include the specified metric"):
                tuner.fit()
            return
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert not results.errors
    if kind == "grid":
        assert sorted(r.metrics[SIGNAL] for r in results) == [0.7, 0.9]
    else:
        # Optuna was told the best so far of every sample that had one; the others it recorded without a value.
        told = sorted(t.value for t in searcher._ot_study.trials if t.value is not None)
        assert len(searcher._ot_study.trials) == 6
        assert told == pytest.approx(sorted(r.config["x"] for r in results if r.config["x"] >= 0.5)) and told
