"""`ablate replay`: collapse rules and ASHA replayed on recorded histories, checked against the live engine.

Hand-made histories run through `orchestrator.replay`; the ASHA rung logic is compared with Ray's own `_Bracket`;
one end-to-end test runs a tiny real sweep with `ablate run` and replays its directory.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.collapse import build_rules, first_verdict
from orchestrator.history import StepMetrics
from orchestrator.collapse import collapse_walk
from orchestrator.replay import AshaBrackets, RecordedTrial, replay
from orchestrator.spec import SweepSpec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
ABLATE = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
OBJ = "val-core/mini/reward/mean@1"


def _spec(pruning: dict[str, Any], max_steps: int = 40) -> SweepSpec:
    data = {
        "name": "replay",
        "trainer": {"backend": "mini"},
        "factors": {"lr_schedule": [{"type": "constant", "lr": 1e-3}]},
        "budget": {"max_steps": max_steps, "eval_every": 1, "save_every": 1},
        "objective": {"metric": OBJ, "mode": "max"},
        "pruning": pruning,
    }
    return parse_spec(data, resolve_base=False)


def _trial(name: str, scores: list[float], *, point: str | None = None, every: int = 1, extra: dict[int, dict[str, float]] | None = None) -> RecordedTrial:
    """A history logging the objective every `every` steps (steps 1..len(scores)*every) and a healthy loss."""
    points = []
    for i in range(1, len(scores) * every + 1):
        metrics = {"actor/pg_loss": 0.1}
        if i % every == 0:
            metrics[OBJ] = scores[i // every - 1]
        metrics.update((extra or {}).get(i, {}))
        points.append(StepMetrics(i, metrics))
    return RecordedTrial(name=name, point=point or name, seed=1, points=tuple(points))


COLLAPSE_ONLY = {"collapse": {"dead": {"enabled": False}, "length_collapse": {"enabled": False}, "entropy": {"enabled": False}}}


@pytest.mark.parametrize(
    ("scores", "extra"),
    [
        ([0.5, 0.6, 0.7, 0.4, 0.3, 0.2, 0.1, 0.1], {}),  # a score drop
        ([0.5, 0.6, 0.7, 0.72, 0.74, 0.75, 0.75, 0.76], {5: {"actor/pg_loss": math.nan}}),  # a NaN loss
        ([0.5, 0.6, 0.7, 0.72, 0.74, 0.75, 0.75, 0.76], {}),  # healthy
    ],
)
def test_replay_collapse_stops_where_first_verdict_first_fires_on_a_prefix(scores: list[float], extra: dict[int, dict[str, float]]) -> None:
    spec = _spec(COLLAPSE_ONLY)
    trial = _trial("t", scores, every=2, extra=extra)
    rules = build_rules(spec.pruning.collapse, OBJ, "max")  # type: ignore[arg-type]
    points = list(trial.points)
    first = next((first_verdict(rules, points[: i + 1]) for i in range(len(points)) if first_verdict(rules, points[: i + 1])), None)
    result = replay(spec, [trial])
    (out,) = result.trials
    if first is None:
        assert out.reason == "completed" and out.stop_step == points[-1].step and out.healthy_at_end
    else:
        assert out.reason == f"collapse:{first.rule}"
        assert out.stop_step == out.collapse_step == first.step
        assert out.steps_used == first.step and out.evidence["reason"] == first.reason
    # Judged after batches (the live engine reads several points at a time): the same first verdict.
    for batch in (3, 5):
        seen = None
        for end in range(batch, len(points) + batch, batch):
            seen = first_verdict(rules, points[: min(end, len(points))])
            if seen is not None:
                break
        assert seen == first
    found = collapse_walk(rules, points)
    assert (found[0] if found else None) == first


def test_replay_is_deterministic() -> None:
    spec = _spec({**COLLAPSE_ONLY, "asha": {"grace_steps": 2, "reduction_factor": 2, "brackets": 2}}, max_steps=16)
    rng = random.Random(3)
    trials = [
        _trial(f"c{i % 3}_s{i // 3}", [rng.uniform(0.2, 0.8) for _ in range(16)], point=f"c{i % 3}") for i in range(9)
    ]
    first = replay(spec, trials, concurrency=3).to_dict()
    second = replay(spec, trials, concurrency=3).to_dict()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["steps_used"] <= first["budget"]


def test_replay_asha_stops_a_weak_late_arrival_at_the_first_rung() -> None:
    spec = _spec({"collapse": None, "asha": {"grace_steps": 2, "reduction_factor": 2, "signal": "best"}}, max_steps=8)
    strong = [_trial(f"strong{i}", [0.5 + 0.05 * s + 0.01 * i for s in range(8)]) for i in range(2)]
    weak = _trial("weak", [0.1] * 8)
    result = replay(spec, [*strong, weak], concurrency=1)
    by_name = {t.name: t for t in result.trials}
    assert by_name["weak"].reason == "asha" and by_name["weak"].stop_step == 2
    assert by_name["weak"].evidence["rung"] == 2 and by_name["weak"].evidence["cutoff"] > 0.1
    assert all(by_name[t.name].reason == "completed" for t in strong)
    assert result.steps_used == 8 + 8 + 2 and result.budget == 24
    assert result.best_config == result.unpruned_best_config == "strong1" and result.best_kept
    assert result.lost == ["weak"]  # stopped while never collapsing: counted as lost
    # The same weak trial arriving first has nothing to be compared with at any rung: it is never stopped.
    first = replay(spec, [weak, *strong], concurrency=1)
    assert first.trials[0].name == "weak" and first.trials[0].reason == "completed"


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")
def test_asha_brackets_match_rays_bracket_on_random_results() -> None:
    from ray.tune.schedulers.async_hyperband import _Bracket

    rng = random.Random(7)
    for case in range(20):
        grace, rf, max_t = rng.choice([1, 2, 3]), rng.choice([2.0, 3.0, 4.0]), rng.choice([9, 20, 41])
        ours = AshaBrackets(grace, max_t, rf, 1, "max")
        theirs = _Bracket(grace, max_t, rf, 0)
        names = [f"t{i}" for i in range(6)]
        for name in names:
            ours.add(name)
        clock = {name: 0 for name in names}
        for _ in range(60):
            name = rng.choice(names)
            clock[name] += rng.choice([1, 2, 5])  # results skip rungs at times, as at eval steps
            value = rng.choice([rng.random(), math.nan]) if case % 4 == 0 else rng.random()
            action, _ = ours.on_result(name, clock[name], value)
            if clock[name] >= max_t:  # the scheduler (not the bracket) stops a trial at max_t, as Tune's does
                assert action == "STOP"
                continue
            assert action == theirs.on_result(SimpleNamespace(trial_id=name), clock[name], value), (case, name)


def test_replay_cli_rejects_bad_input_with_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: s\ntrainer: {{backend: mini, base: {ROOT}/configs/mini/original.yaml}}\nfactors: {{lr_schedule: [{{type: constant, lr: 0.001}}]}}\nbudget: {{max_steps: 10, eval_every: 5, save_every: 5}}\n")
    result = CliRunner().invoke(app, ["replay", str(spec), "--from", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2
    assert "missing.jsonl" in result.output and "Traceback" not in result.output


def test_replay_of_a_real_sweep_reproduces_the_live_collapse_stop(tmp_path: Path, minigrpo_cache: Path) -> None:
    env = {**os.environ, "ABLATE_CACHE_DIR": str(minigrpo_cache), "WANDB_SILENT": "true"}
    spec = tmp_path / "collapse.yaml"
    spec.write_text(
        f"name: collapse\ntrainer: {{backend: mini, base: {ROOT}/configs/mini/original.yaml, overrides: {{mini.warm_start.steps: 600}}}}\n"
        + textwrap.dedent(
            """\
            factors:
              lr_schedule: [{type: constant, lr: 5.0e-3}, {type: constant, lr: 1.0e-3}]
            budget: {max_steps: 40, eval_every: 5, save_every: 5}
            objective: {metric: val-core/mini/reward/mean@1, mode: max}
            """
        )
    )
    out = tmp_path / "out"
    run = subprocess.run([*ABLATE, "run", str(spec), "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = subprocess.run([*ABLATE, "replay", str(spec), "--from", str(out), "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    trials = {t["name"]: t for t in data["trials"]}
    collapsed = trials["lr=const0.005_s1"]
    assert collapsed["live_reason"].startswith("collapse:")
    assert collapsed["reason"] == collapsed["live_reason"] and collapsed["stop_step"] == collapsed["live_step"]
    assert collapsed["live_match"] is True and data["mismatches"] == 0
    assert trials["lr=const0.001_s1"]["reason"] == "completed"
    assert data["steps_used"] == collapsed["stop_step"] + 40 and data["budget"] == 80
    text = subprocess.run([*ABLATE, "replay", str(spec), "--from", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert "collapse decisions that differ from the live run: 0" in text.stdout


def test_replay_calibrates_each_rule_and_sign_on_real_public_runs(tmp_path: Path) -> None:
    """Per rule: collapses caught in time and false stops; per sign: false alarms, against each curve's own truth."""
    bank = ROOT / "tests" / "data" / "bank" / "runs"
    logs = [bank / name for name in (
        "berl__r12_ll_reward_kl0.001.jsonl",  # 0.456 -> 0.115: collapses
        "rlvr-jason-0.5b__run2.jsonl",  # 0.45 -> 0.05 -> 0: collapses
        "verl-async-reward-agent__q3b_fsdp_base.jsonl",  # healthy; its entropy falls 70-85%
    )]
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"name: s\ntrainer: {{backend: mini, base: {ROOT}/configs/mini/original.yaml}}\n"
        "factors: {lr_schedule: [{type: constant, lr: 0.001}]}\nbudget: {max_steps: 500, eval_every: 5, save_every: 5}\n"
    )
    result = CliRunner().invoke(app, ["replay", str(spec), "--from", *map(str, logs), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rules = {r["rule"]: r for r in data["rules"]}
    assert (rules["score_drop"]["in_time"], rules["score_drop"]["collapsing"]) == (2, 2)
    assert (rules["all rules (live, OR)"]["false_stops"], rules["all rules (live, OR)"]["healthy"]) == (0, 1)
    assert rules["non_finite"]["missed"] == 2
    signs = {s["sign"]: s for s in data["signs"]}
    assert (signs["entropy_fall"]["false_alarms"], signs["entropy_fall"]["healthy_logged"]) == (1, 1)
    assert signs["length_fall"]["false_alarms"] == 0
    table = CliRunner().invoke(app, ["replay", str(spec), "--from", *map(str, logs)])
    assert "collapse rules on these trials" in table.stdout and "leading signs" in table.stdout
