"""Seed-aware ASHA: `SeedMeanHalving` on hand-made curves, its replay, and `SeedMeanScheduler` under real Ray Tune."""

from __future__ import annotations

import math
from typing import Any

import pytest

from orchestrator.errors import SpecError
from orchestrator.history import StepMetrics
from orchestrator.pruners import CONTINUE, STOP, SeedMeanHalving, rung_milestones
from orchestrator.replay import AshaBrackets, RecordedTrial, replay
from orchestrator.spec import SweepSpec, parse_spec

OBJ = "val-core/mini/reward/mean@1"
GROUPS = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}


def _halving(groups: dict[str, str] = GROUPS, mode: str = "max") -> SeedMeanHalving:
    # Rungs at 10, 20, 40, 80; the cutoff is the median (rf 2) of the configurations recorded before.
    return SeedMeanHalving(grace_steps=10, max_t=101, reduction_factor=2, mode=mode, groups=groups)


def test_rung_milestones_match_ashas() -> None:
    assert rung_milestones(10, 101, 2) == [10, 20, 40, 80]
    assert rung_milestones(20, 251, 3) == [20, 60, 180]
    with pytest.raises(ValueError, match="`reduction_factor` must be above 1 but got 1"):
        rung_milestones(10, 100, 1)


def test_seed_mean_stops_every_seed_of_a_dominated_configuration_where_asha_stops_single_seeds() -> None:
    results = [("a1", 0.8), ("a2", 0.6), ("b1", 0.9), ("b2", 0.3)]
    halving = _halving()
    actions = {trial: halving.on_result(trial, 10, value)[0] for trial, value in results}
    # A (mean 0.7) completes the rung first and continues; B (mean 0.6) is below the cutoff 0.7: both seeds stop,
    # even b1, the best single seed. b1 had already been told to continue (B was not complete yet).
    assert actions == {"a1": CONTINUE, "a2": CONTINUE, "b1": CONTINUE, "b2": STOP}
    action, evidence = halving.on_result("b1", 20, 0.95)
    assert action == STOP
    assert evidence is not None and evidence["group"] == "B" and evidence["rung"] == 10
    assert evidence["value"] == pytest.approx(0.6) and evidence["cutoff"] == pytest.approx(0.7)
    assert halving.on_result("a2", 20, 0.61)[0] == CONTINUE
    # ASHA on the same results, per trial: it culls A's unlucky seed and keeps B's lucky one.
    asha = AshaBrackets(10, 101, 2, 1, "max")
    for trial, _ in results:
        asha.add(trial)
    assert {t: asha.on_result(t, 10, v)[0] for t, v in results} == {"a1": CONTINUE, "a2": STOP, "b1": CONTINUE, "b2": STOP}


def test_seed_mean_waits_for_every_seed_and_counts_a_seed_that_ended_with_its_last_signal() -> None:
    halving = _halving()
    assert halving.on_result("a1", 10, 0.5)[0] == CONTINUE
    assert halving.on_result("a1", 20, 0.5)[0] == CONTINUE
    # a2 ended (collapsed) before the first rung with best-so-far 0.9: A's mean at 10 and 20 is 0.7.
    halving.on_complete("a2", 0.9)
    assert halving.on_result("b1", 10, 0.6)[0] == CONTINUE  # B incomplete: b2 has not reported yet
    assert halving.stopped_groups() == {}
    action, evidence = halving.on_result("b2", 10, 0.7)
    assert action == STOP and evidence is not None and evidence["value"] == pytest.approx(0.65)
    assert set(halving.stopped_groups()) == {"B"}


def test_seed_mean_judges_a_configuration_once_per_rung_and_never_stops_the_first() -> None:
    halving = _halving({"a1": "A", "b1": "B", "c1": "C"})
    assert halving.on_result("a1", 10, 0.1)[0] == CONTINUE  # first at the rung
    assert halving.on_result("b1", 10, 0.5)[0] == CONTINUE  # above the cutoff 0.1
    assert halving.on_result("c1", 10, 0.2)[0] == STOP  # below the median of [0.1, 0.5] = 0.3
    # A continues at rung 10 for good; at rung 20 it is compared with B, recorded there first.
    assert halving.on_result("b1", 20, 0.5)[0] == CONTINUE
    assert halving.on_result("a1", 20, 0.1)[0] == STOP


@pytest.mark.parametrize(
    ("signal", "step", "expected"),
    [
        (None, 10, CONTINUE),  # no objective yet: nothing recorded
        (math.nan, 10, CONTINUE),  # NaN never reaches a rung
        (0.1, 101, STOP),  # at max_t, as in Tune
    ],
)
def test_seed_mean_gates(signal: float | None, step: int, expected: str) -> None:
    halving = _halving({"a1": "A", "b1": "B"})
    halving.on_result("a1", 10, 0.9)
    assert halving.on_result("b1", step, signal)[0] == expected
    if expected == CONTINUE:
        assert halving.stopped_groups() == {}


def test_seed_mean_min_mode_stops_the_higher_mean() -> None:
    halving = _halving(mode="min")
    for trial, value in [("a1", 1.0), ("a2", 2.0), ("b1", 0.5), ("b2", 3.0)]:
        halving.on_result(trial, 10, value)
    assert set(halving.stopped_groups()) == {"B"}  # mean 1.75 above A's 1.5


def test_seed_mean_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"`mode` has to be one of \[min, max\]. Got: up"):
        SeedMeanHalving(10, 100, 2, "up", GROUPS)
    with pytest.raises(KeyError, match="'zz' is not registered"):
        _halving().on_result("zz", 10, 0.1)


# ------------------------------------------------------------------------------------------------- spec, replay


def _spec(asha: dict[str, Any] | None, max_steps: int = 8) -> SweepSpec:
    data = {
        "name": "seedmean",
        "trainer": {"backend": "mini"},
        "factors": {"rollout_n": [2]},
        "seeds": 2,
        "budget": {"max_steps": max_steps, "eval_every": 1, "save_every": 1},
        "objective": {"metric": OBJ, "mode": "max"},
        "pruning": {"collapse": None, "asha": asha},
    }
    return parse_spec(data, resolve_base=False)


def test_spec_seed_mean_needs_one_bracket() -> None:
    with pytest.raises(SpecError, match=r"pruning.asha: `brackets` must be 1 with `by: seed_mean` \(got 2\)") as info:
        _spec({"by": "seed_mean", "brackets": 2})
    assert "\n" not in str(info.value)
    with pytest.raises(SpecError, match=r"pruning.asha.by: must be 'trial' or 'seed_mean'"):
        _spec({"by": "config"})
    assert _spec({"by": "seed_mean"}).pruning.asha.by == "seed_mean"  # type: ignore[union-attr]


def _recorded(point: str, seed: int, scores: list[float]) -> RecordedTrial:
    points = tuple(StepMetrics(i + 1, {OBJ: s}) for i, s in enumerate(scores))
    return RecordedTrial(name=f"{point}_s{seed}", point=point, seed=seed, points=points)


# "good" has the best mean but one slow seed; "steady" has two middling seeds. Arrival: good's seeds first.
BANK = [
    _recorded("good", 1, [0.9, 0.9, 0.95, 0.95, 0.96, 0.97, 0.97, 0.98]),
    _recorded("good", 2, [0.2, 0.4, 0.6, 0.8, 0.9, 0.93, 0.95, 0.96]),
    _recorded("steady", 1, [0.6, 0.6, 0.6, 0.61, 0.61, 0.62, 0.62, 0.62]),
    _recorded("steady", 2, [0.6, 0.6, 0.61, 0.61, 0.62, 0.62, 0.62, 0.63]),
]


def test_replay_seed_mean_keeps_the_best_configuration_where_asha_loses_it() -> None:
    asha = replay(_spec({"grace_steps": 1, "reduction_factor": 2, "signal": "best"}), BANK)
    seed_mean = replay(_spec({"grace_steps": 1, "reduction_factor": 2, "signal": "best", "by": "seed_mean"}), BANK)
    assert asha.unpruned_best_config == "good"
    # ASHA culls good's slow seed at the first rung: good's mean best is then (0.98 + 0.2) / 2, and steady wins.
    assert {t.name: t.reason for t in asha.trials}["good_s2"] == "asha"
    assert not asha.best_kept
    # Seed mean: good (mean 0.55 at rung 1) goes first; steady (0.6) is above it; at rung 2 good (0.65)
    # is first again and steady (0.6) falls below: both of steady's seeds stop, good runs on.
    reasons = {t.name: (t.reason, t.stop_step) for t in seed_mean.trials}
    assert reasons["good_s1"] == ("completed", 8) and reasons["good_s2"] == ("completed", 8)
    assert reasons["steady_s1"][0] == "asha" and reasons["steady_s2"][0] == "asha"
    assert seed_mean.best_kept and seed_mean.best_config == "good"
    assert seed_mean.steps_used < seed_mean.budget
    again = replay(_spec({"grace_steps": 1, "reduction_factor": 2, "signal": "best", "by": "seed_mean"}), BANK)
    assert again.to_dict() == seed_mean.to_dict()


# ----------------------------------------------------------------------------------------------- real Ray Tune

CURVES = {f"{t.point}_s{t.seed}": (t.point, [p.get(OBJ) for p in t.points]) for t in BANK}


def _replaying_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    best = -math.inf
    for step, score in enumerate(CURVES[config["trial_id"]][1], start=1):
        best = max(best, score)
        tune.report({"step": step, "signal": best})


def test_seed_mean_scheduler_stops_a_configuration_under_real_tune(tmp_path: Any) -> None:
    import sys

    import ray
    from ray import cloudpickle, tune

    from orchestrator.tune_schedulers import SeedMeanScheduler

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # test modules are not importable by Ray workers

    scheduler = SeedMeanScheduler(
        time_attr="step",
        metric="signal",
        mode="max",
        max_t=9,
        grace_steps=1,
        reduction_factor=2,
        groups={name: point for name, (point, _) in CURVES.items()},
    )
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            _replaying_trainable,
            param_space={"trial_id": tune.grid_search(list(CURVES))},
            # Two at a time in grid order: good's seeds run (and reach every rung) first.
            tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=2),
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()
    last = {r.config["trial_id"]: int(r.metrics["step"]) for r in grid}
    assert last["good_s1"] == 8 and last["good_s2"] == 8
    # steady (0.6 at rung 2 against good's 0.65) is stopped once both its seeds have reached rung 2: the seed
    # still running then stops at its next result (a seed that ran ahead to its end meanwhile has ended anyway).
    assert min(last["steady_s1"], last["steady_s2"]) <= 3


# -------------------------------------------------------------------------------------------- in `ablate run`


def test_ablate_run_seed_mean_stops_both_seeds_of_the_weaker_configuration(tmp_path: Any, minigrpo_cache: Any) -> None:
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    from orchestrator.store import SQLiteStore

    root = Path(__file__).resolve().parents[1]
    spec = tmp_path / "seedmean.yaml"
    spec.write_text(
        f"name: seedmean\ntrainer: {{backend: mini, base: {root}/configs/mini/original.yaml, "
        "overrides: {mini.warm_start.steps: 600}}\n"
        + textwrap.dedent(
            f"""\
            factors:
              lr_schedule: [{{type: constant, lr: 1.0e-3}}, {{type: constant, lr: 5.0e-3}}]
            seeds: 2
            budget: {{max_steps: 40, eval_every: 5, save_every: 5}}
            objective: {{metric: {OBJ}, mode: max}}
            pruning: {{collapse: null, asha: {{by: seed_mean, grace_steps: 5, reduction_factor: 2, signal: ema}}}}
            execution: {{max_concurrent_trials: 2}}
            """
        )
    )
    env = {**os.environ, "ABLATE_CACHE_DIR": str(minigrpo_cache), "RAY_ADDRESS": "local", "WANDB_SILENT": "true"}
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli import main; main()", "run", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    store = SQLiteStore(out / "sweep.db")
    trials = {t.name: t for t in store.list_trials("seedmean")}
    # lr 1e-3's seeds run first (two at a time, in design order) and set the cutoff; lr 5e-3 collapses
    # (collapse rules off here), its seed mean falls below, and its seeds are stopped together: every seed still
    # running when the configuration was judged (a seed that started seconds earlier may have finished by then).
    assert [trials[f"lr=const0.001_s{s}"].stop_reason for s in (1, 2)] == ["completed", "completed"]
    weak = [trials[f"lr=const0.005_s{s}"] for s in (1, 2)]
    stopped = [t for t in weak if t.stop_reason == "asha"]
    assert stopped, weak
    judged = min(e.time for t in stopped for e in store.list_events(t.id, kind="stopped"))
    for t in weak:
        if t.stop_reason == "asha":
            assert t.stop_step is not None and t.stop_step < 40
        else:  # it had run to its end before its configuration was judged (events are written by two processes)
            assert t.stop_reason == "completed"
            assert max(e.time for e in store.list_events(t.id, kind="completed")) <= judged + 5.0, t
