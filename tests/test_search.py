"""`search: {type: optuna}`: the spec, its trials, `ablate plan`, and a real search on the miniature.

The end-to-end test runs `ablate run` in a subprocess (its own Ray), real Tune `OptunaSearch` with ASHA and the
collapse rules, the real miniature trainer, then reads the store, Optuna's saved study and `ablate report`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.errors import SpecError
from orchestrator.search import corner_trials, optuna_space, search_template, search_trial
from orchestrator.spec import parse_spec
from orchestrator.store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
ABLATE = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
LR = "actor_rollout_ref.actor.optim.lr"
KL = "actor_rollout_ref.actor.kl_loss_coef"
OBJ = "val-core/mini/reward/mean@1"


def _data(search: dict[str, Any], **more: Any) -> dict[str, Any]:
    data = {
        "name": "search",
        "trainer": {"backend": "mini"},
        "factors": {"kl": [{"use_kl_loss": True, "coef": 0.01, "type": "low_var_kl"}]},
        "budget": {"max_steps": 10, "eval_every": 5, "save_every": 5},
        "search": search,
    }
    data.update(more)
    return data


SPACE = {LR: {"low": 5e-4, "high": 8e-3, "log": True}, KL: {"low": 1e-3, "high": 0.3, "log": True}}


@pytest.mark.parametrize(
    ("search", "more", "message"),
    [
        ({"type": "optuna", "num_samples": 0, "space": SPACE}, {}, "search.num_samples: must be >= 1 (got 0)"),
        ({"type": "grid", "num_samples": 2, "space": SPACE}, {}, "search.type: must be 'optuna' (got 'grid')"),
        ({"type": "optuna", "num_samples": 2, "space": {}}, {}, "search.space: must have at least 1 item"),
        (
            {"type": "optuna", "num_samples": 2, "space": {LR: {"low": 0, "high": 1e-2, "log": True}}},
            {},
            f"search.space.{LR}: `log: true` needs positive bounds (got low=0)",
        ),
        (
            {"type": "optuna", "num_samples": 2, "space": {LR: {"low": 1e-2, "high": 1e-3}}},
            {},
            f"search.space.{LR}: `low` must be below `high` (got low=0.01, high=0.001)",
        ),
        (
            {"type": "optuna", "num_samples": 2, "space": {LR: {"low": 1e-3}}},
            {},
            f"search.space.{LR}: a range needs both `low` and `high`",
        ),
        (
            {"type": "optuna", "num_samples": 2, "space": {"actor_rollout_ref.rollout.n": {"low": 2, "high": 8, "choices": [2, 4]}}},
            {},
            "give either `choices` or a range",
        ),
        (
            {"type": "optuna", "num_samples": 2, "space": {"actor_rollout_ref.rollout.n": {"low": 2.5, "high": 8, "type": "int"}}},
            {},
            "`type: int` needs integer bounds",
        ),
        (
            {"type": "optuna", "num_samples": 2, "space": {"trainer.test_freq": {"low": 1, "high": 5}}},
            {},
            "search.space: `trainer.test_freq` is set by budget.eval_every; it cannot be searched",
        ),
        ({"type": "optuna", "num_samples": 2, "space": SPACE}, {"seeds": 3}, "search: `seeds` must be a single seed"),
        (
            {"type": "optuna", "num_samples": 2, "space": SPACE},
            {"factors": {"rollout_n": [2, 8]}},
            "search: every factor must have exactly one level, the configuration the search varies around (`rollout_n` has 2)",
        ),
        (
            {"type": "optuna", "num_samples": 2, "space": SPACE},
            {"pruning": {"asha": {"by": "seed_mean"}}},
            "search: `pruning.asha.by: seed_mean` needs seeds to average",
        ),
    ],
)
def test_search_spec_is_validated_with_one_line(search: dict[str, Any], more: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_data(search, **more), resolve_base=False)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_search_trials_are_the_template_with_the_sample_on_top() -> None:
    spec = parse_spec(_data({"type": "optuna", "num_samples": 4, "space": SPACE}), resolve_base=False)
    template = search_template(spec)
    a = search_trial(template, "mini", {LR: 0.00123456, KL: 0.05})
    again = search_trial(template, "mini", {LR: 0.00123456, KL: 0.05})
    other = search_trial(template, "mini", {LR: 0.002, KL: 0.05})
    assert a == again and a.id != other.id and a.id != template.id
    assert a.name == "lr=0.00123_kl_loss_coef=0.05_s1"
    assert a.overrides[LR] == 0.00123456 and a.overrides[KL] == 0.05
    assert a.overrides["actor_rollout_ref.actor.use_kl_loss"] is True  # the template's factor level stays
    assert a.overrides["data.seed"] == 1 and a.seed == 1
    lows, highs = corner_trials(spec)
    assert (lows.overrides[LR], highs.overrides[LR], highs.overrides[KL]) == (5e-4, 8e-3, 0.3)


def test_optuna_space_maps_ranges_and_choices() -> None:
    import optuna

    space = {
        LR: {"low": 1e-4, "high": 1e-2, "log": True},
        "actor_rollout_ref.rollout.n": {"low": 2, "high": 8, "type": "int"},
        "actor_rollout_ref.actor.loss_agg_mode": {"choices": ["token-mean", "seq-mean-token-sum"]},
    }
    spec = parse_spec(_data({"type": "optuna", "num_samples": 2, "space": space}), resolve_base=False)
    dists = optuna_space(spec)
    assert dists[LR] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert dists["actor_rollout_ref.rollout.n"] == optuna.distributions.IntDistribution(2, 8)
    assert dists["actor_rollout_ref.actor.loss_agg_mode"].choices == ("token-mean", "seq-mean-token-sum")


def _spec_file(tmp_path: Path, body: str, name: str = "srch") -> Path:
    text = f"name: {name}\ntrainer: {{backend: mini, base: {ROOT}/configs/mini/original.yaml, overrides: {{mini.warm_start.steps: 600}}}}\n"
    path = tmp_path / f"{name}.yaml"
    path.write_text(text + textwrap.dedent(body))
    return path


SEARCH_BODY = f"""\
    factors:
      kl: [{{use_kl_loss: true, coef: 0.01, type: low_var_kl}}]
    budget: {{max_steps: 10, eval_every: 5, save_every: 5, hours_per_trial: 2}}
    objective: {{metric: {OBJ}, mode: max}}
    pruning: {{asha: {{grace_steps: 5, reduction_factor: 2}}}}
    execution: {{max_concurrent_trials: 1}}
    search:
      type: optuna
      num_samples: 3
      space:
        {LR}: {{low: 1.0e-3, high: 2.0e-2, log: true}}
        {KL}: {{low: 1.0e-3, high: 0.3, log: true}}
    """


def test_plan_shows_the_search_and_checks_its_corners(tmp_path: Path) -> None:
    spec = _spec_file(tmp_path, SEARCH_BODY)
    result = CliRunner().invoke(app, ["plan", str(spec)])
    assert result.exit_code == 0, result.output
    assert "search: optuna (TPE, seed 0), 3 trials sampled around the configuration above" in result.output
    assert f"{LR}: [0.001, 0.02] log" in result.output
    assert "3 trials x 1 seed; 0 GPU(s) per trial; at most 6 CPU-hours" in result.output
    listed = json.loads(CliRunner().invoke(app, ["plan", str(spec), "--json"]).stdout)
    assert [t["name"] for t in listed] == ["lr=0.001_kl_loss_coef=0.001_s1", "lr=0.02_kl_loss_coef=0.3_s1"]
    assert all(not t["errors"] for t in listed)
    bad = _spec_file(tmp_path, SEARCH_BODY.replace("low: 1.0e-3, high: 2.0e-2", "low: -1, high: 2.0e-2"), name="bad")
    refused = CliRunner().invoke(app, ["plan", str(bad)])
    assert refused.exit_code == 2
    assert f"search.space.{LR}: `log: true` needs positive bounds (got low=-1)" in refused.output


def test_a_search_whose_samples_collapse_right_after_their_first_evals_finishes(tmp_path: Path, minigrpo_cache: Path) -> None:
    """LRs of 50-100 collapse the miniature within its first steps: the length rule fires at step 6, just after the
    evals at 0 and 5, which a trial often reads in one batch with the collapsing steps. Those evals are still
    reported (they came before the collapse), so Optuna learns each sample's best so far and the sweep ends."""
    body = SEARCH_BODY.replace("low: 1.0e-3, high: 2.0e-2", "low: 50, high: 100").replace("num_samples: 3", "num_samples: 2")
    spec = _spec_file(tmp_path, body)
    out = tmp_path / "out"
    env = {**os.environ, "ABLATE_CACHE_DIR": str(minigrpo_cache), "RAY_ADDRESS": "local", "WANDB_SILENT": "true"}
    run = subprocess.run([*ABLATE, "run", str(spec), "--out", str(out)], capture_output=True, text=True, env=env, timeout=540)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    trials = SQLiteStore(out / "sweep.db").list_trials("srch")
    assert len(trials) == 2
    assert all(t.stop_reason.startswith("collapse:") and t.stop_step <= 10 for t in trials), [(t.stop_reason, t.stop_step) for t in trials]
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch()
    searcher.restore_from_dir(str(out / "tune" / "experiment"))
    told = {round(ot.params[LR], 12): ot.value for ot in searcher._ot_study.trials}
    assert {round(t.overrides[LR], 12): t.best_score for t in trials} == pytest.approx(told)


def test_search_runs_on_the_miniature_and_tells_optuna_the_best_so_far(tmp_path: Path, minigrpo_cache: Path) -> None:
    spec = _spec_file(tmp_path, SEARCH_BODY)
    out = tmp_path / "out"
    env = {**os.environ, "ABLATE_CACHE_DIR": str(minigrpo_cache), "RAY_ADDRESS": "local", "WANDB_SILENT": "true"}
    run = subprocess.run([*ABLATE, "run", str(spec), "--out", str(out)], capture_output=True, text=True, env=env, timeout=540)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    store = SQLiteStore(out / "sweep.db")
    trials = store.list_trials("srch")
    # Each sampled configuration registered itself: 3 distinct trials, their samples in range, on the template.
    assert len(trials) == 3 and len({t.id for t in trials}) == 3
    for t in trials:
        assert 1e-3 <= t.overrides[LR] <= 2e-2 and 1e-3 <= t.overrides[KL] <= 0.3
        assert t.overrides["actor_rollout_ref.actor.use_kl_loss"] is True and t.seed == 1
        assert t.status in ("completed", "stopped") and t.best_score is not None
        assert store.get_history(t.id), t.name
    # What Optuna recorded (Tune saves the searcher's study): each trial's best so far, never a later, lower value.
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch()
    searcher.restore_from_dir(str(out / "tune" / "experiment"))
    told = {round(ot.params[LR], 12): ot.value for ot in searcher._ot_study.trials}
    assert len(told) == 3
    below_best = 0
    for t in trials:
        assert told[round(t.overrides[LR], 12)] == pytest.approx(t.best_score)
        reported = [p.get(OBJ) for p in store.get_history(t.id) if p.get(OBJ) is not None and p.step < (t.stop_step or 10**9)]
        below_best += reported[-1] < t.best_score  # its last reported value was lower: Optuna got the best instead
    assert below_best >= 1
    # The report ranks them by best score and marks the pruned ones.
    report = subprocess.run([*ABLATE, "report", str(out), "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = json.loads(report.stdout)["search"]
    by_name = {t.name: t for t in trials}
    assert [r["name"] for r in rows] == sorted(by_name, key=lambda n: -by_name[n].best_score)
    for row in rows:
        stopped = by_name[row["name"]].stop_reason
        assert row["pruned"] == (stopped == "asha" or stopped.startswith("collapse:")), row
    # TPE's first samples (seed 0) include LRs that collapse (0.0052, 0.0061): at least one trial is pruned.
    assert any(r["pruned"] for r in rows), rows
    text = (out / "report" / "search.md").read_text()
    assert text.count("**pruned**") == sum(r["pruned"] for r in rows)
    assert all(math.isfinite(r["best_score"]) for r in rows)
