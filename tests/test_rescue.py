"""Rescue branches: remedies, where a branch starts, and branches run end to end on real Ray and the real trainer.

The end-to-end tests run the CLI in a subprocess (its own Ray), as a user would, and read the sweep store after.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from orchestrator.checkpoints import CheckpointKeeper
from orchestrator.design import Trial
from orchestrator.rescue import RescueError, branch_trial, check_remedies
from orchestrator.spec import parse_remedy
from orchestrator.store import SCHEMA_VERSION, SQLiteStore

sys.path.insert(0, str(Path(__file__).parent))
from mini_sweeps import ABLATE, HEALTHY_LR, run_ablate, trainers, wait_for_trial, wait_until_no_trainers, write_spec  # noqa: E402

SCORE = "val-core/mini/reward/mean@1"


@pytest.fixture(scope="module")
def env(minigrpo_cache: Path) -> dict[str, str]:
    return {**os.environ, "ABLATE_CACHE_DIR": str(minigrpo_cache), "WANDB_SILENT": "true"}


# ---- remedies --------------------------------------------------------------------------------------------------


def test_remedies_speak_the_factors_vocabulary_and_refuse_what_a_resume_would_undo() -> None:
    kl = parse_remedy({"kl": 0.1})
    assert kl.label == "kl=0.1"
    assert kl.overrides == {
        "actor_rollout_ref.actor.use_kl_loss": True,
        "actor_rollout_ref.actor.kl_loss_coef": 0.1,
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
    }
    both = parse_remedy({"rollout_n": 8, "actor_rollout_ref.actor.clip_ratio_high": 0.28})
    assert both.label == "n=8_clip_ratio_high=0.28"
    assert both.overrides == {"actor_rollout_ref.rollout.n": 8, "actor_rollout_ref.actor.clip_ratio_high": 0.28}
    refused = {
        "lr_schedule": ({"lr_schedule": {"type": "constant", "lr": 1e-6}}, "restores the optimizer's and the LR scheduler's state"),
        "optim key": ({"actor_rollout_ref.actor.optim.lr": 1e-6}, "restores the optimizer's and the LR scheduler's state"),
        "batch size": ({"data.train_batch_size": 64}, "restores the data loader's position"),
        "seed": ({"data.seed": 3}, "which the seeds set"),
        "group of one": ({"rollout_n": 1}, "greater than or equal to 2"),
        "unknown factor": ({"lr": 1e-6}, "unknown factor `lr`"),
        "empty": ({}, "a remedy is a mapping of factors"),
    }
    for what, (raw, message) in refused.items():
        with pytest.raises(ValueError, match=None) as caught:
            parse_remedy(raw)
        assert message in str(caught.value), (what, str(caught.value))


def test_a_remedy_that_is_a_trials_own_setting_is_refused_and_a_branch_applies_its_remedy() -> None:
    parent = Trial(
        id="a" * 12, name="n=2_s1", point="n=2", levels={"rollout_n": "2"}, values={"rollout_n": 2}, seed=1,
        overrides={"actor_rollout_ref.rollout.n": 2, "actor_rollout_ref.actor.use_kl_loss": False},
    )
    with pytest.raises(RescueError, match=r"remedies\[0\] \(n=2\) is trial n=2_s1's own setting"):
        check_remedies([parent], [parse_remedy({"rollout_n": 2})])
    check_remedies([parent], [parse_remedy({"rollout_n": 8}), parse_remedy({"kl": 0.1})])
    child = branch_trial(parent, parse_remedy({"rollout_n": 8}), from_step=40)
    assert (child.parent, child.from_step, child.remedy, child.seed) == (parent.id, 40, "n=8", 1)
    assert child.name == "n=2_s1+n=8" and child.overrides["actor_rollout_ref.rollout.n"] == 8
    assert child.overrides["actor_rollout_ref.actor.use_kl_loss"] is False
    # One branch per parent, remedy and step: the id is stable and distinct.
    assert branch_trial(parent, parse_remedy({"rollout_n": 8}), 40).id == child.id
    assert branch_trial(parent, parse_remedy({"rollout_n": 8}), 30).id != child.id


def test_a_store_of_the_previous_schema_gains_the_branch_columns_and_keeps_its_trials(tmp_path: Path) -> None:
    path = tmp_path / "sweep.db"
    with SQLiteStore(path) as store:
        store.create_sweep("s", "name: s", sweep_id="s")
        store.create_trials("s", [Trial(id="b" * 12, name="t", point="p", levels={}, values={}, seed=1, overrides={"k": 1})])
    conn = sqlite3.connect(path)
    for column in ("parent", "from_step", "remedy"):
        conn.execute(f"ALTER TABLE trials DROP COLUMN {column}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with SQLiteStore(path) as store:
        (record,) = store.list_trials("s")
        assert (record.name, record.overrides, record.parent, record.from_step) == ("t", {"k": 1}, None, None)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.close()


def test_the_keeper_can_keep_the_last_evaluated_checkpoints_for_a_branch_before_the_onset(tmp_path: Path) -> None:
    def save(step: int) -> None:
        (tmp_path / f"global_step_{step}" / "actor").mkdir(parents=True)
        (tmp_path / "latest_checkpointed_iteration.txt").write_text(str(step))

    keeper = CheckpointKeeper(tmp_path, mode="max", keep_evals=2)
    for step, score in ((5, 0.9), (10, 0.5), (15, 0.4), (20, 0.3), (25, None)):
        save(step)
        keeper.observe(step, score)
        keeper.sweep()
    # The best (5) in best/, the latest (25), and the last two evaluated steps (15, 20); 10 is gone.
    assert sorted(p.name for p in tmp_path.glob("global_step_*")) == ["global_step_15", "global_step_20", "global_step_25"]
    assert (tmp_path / "best" / "global_step_5").is_dir()


# ---- end to end ------------------------------------------------------------------------------------------------


# With the tests' short warm start this LR collapses at about step 15, after checkpoints at steps 5 and 10.
SLIDING_LR = 3e-3


def _spec(tmp_path: Path, name: str, max_steps: int, rescue: str) -> Path:
    return write_spec(
        tmp_path,
        name,
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {SLIDING_LR}}}, {{type: constant, lr: {HEALTHY_LR}}}]
        budget: {{max_steps: {max_steps}, eval_every: 5, save_every: 5}}
        objective: {{metric: {SCORE}, mode: max}}
        pruning: {{collapse: {{}}, rescue: {rescue}}}
        """,
    )


def _records(out: Path) -> dict[str, Any]:
    with SQLiteStore(out / "sweep.db") as store:
        return {t.name: t for t in store.list_trials(store.list_sweeps()[0].id)}


def _trained_steps(metrics: Path) -> list[int]:
    steps = []
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if "actor/pg_loss" in record["data"]:
            steps.append(record["step"])
    return steps


def test_a_collapsed_trial_is_branched_from_its_checkpoint_once_per_remedy_and_ablate_rescue_adds_more(
    tmp_path: Path, env: dict[str, str]
) -> None:
    spec = _spec(tmp_path, "rescue", 40, "{remedies: [{kl: 0.1}, {rollout_n: 4}], from: last_healthy}")
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    records = _records(out)
    parent = records[f"lr=const{SLIDING_LR:g}_s1"]
    healthy = records[f"lr=const{HEALTHY_LR:g}_s1"]
    assert parent.stop_reason.is_collapse and healthy.stop_reason == "completed"
    branches = {r.remedy: r for r in records.values() if r.parent is not None}
    assert set(branches) == {"kl=0.1", "n=4"}  # the healthy trial has none, and branches are not branched again
    rows = {r["name"]: r for r in json.loads(run_ablate(["status", str(out), "--json"], env).stdout)["trials"]}
    store = SQLiteStore(out / "sweep.db")
    for remedy, branch in branches.items():
        # The latest checkpoint before the collapse onset (the sweep kept its last evaluated ones for this).
        assert branch.parent == parent.id and branch.seed == parent.seed and 0 < branch.from_step < parent.collapse_step
        assert rows[branch.name]["parent"] == parent.id and rows[branch.name]["from_step"] == branch.from_step
        assert branch.status in ("completed", "stopped") and branch.last_step > branch.from_step
        (started, *_) = store.list_events(branch.id, kind="started")
        argv = started.data["argv"]
        # The remedy is in the trainer's argv, and the trainer resumed from the copy of the parent's checkpoint.
        expected = "actor_rollout_ref.actor.kl_loss_coef=0.1" if remedy == "kl=0.1" else "actor_rollout_ref.rollout.n=4"
        assert expected in argv, argv
        copy = out.absolute() / "trials" / branch.name / "checkpoints" / "branch" / f"global_step_{branch.from_step}"
        # (Hydra quotes the path: a trial's folder name holds `=`.)
        assert f"trainer.resume_from_path='{copy}'" in argv and "trainer.resume_mode=resume_path" in argv
        # Its first trained step follows the branch step; its weights at start are the parent's at that step.
        assert _trained_steps(out / "trials" / branch.name / "metrics.0.jsonl")[0] == branch.from_step + 1
        kept = out / "trials" / parent.name / "checkpoints" / f"global_step_{branch.from_step}"
        kept = kept if kept.is_dir() else kept.parent / "best" / kept.name
        parent_weights = torch.load(kept / "actor" / "model_world_size_1_rank_0.pt", weights_only=True)
        start_weights = torch.load(copy / "actor" / "model_world_size_1_rank_0.pt", weights_only=True)
        assert parent_weights.keys() == start_weights.keys()
        assert all(torch.equal(parent_weights[k], start_weights[k]) for k in parent_weights)
        log = (out / "trials" / branch.name / "attempt-0.stdout.log").read_text()
        assert f"resumed from {copy} at step {branch.from_step}" in log
        # Its history starts as the parent's, up to the branch step.
        parent_scores = {p.step: p.get(SCORE) for p in store.get_history(parent.id) if p.step < branch.from_step}
        branch_scores = {p.step: p.get(SCORE) for p in store.get_history(branch.id) if p.step < branch.from_step}
        assert branch_scores == parent_scores
    store.close()
    assert trainers(out) == []

    # After the fact: bad input is refused with one line, exit 2, nothing launched.
    bad = {
        ("--remedy", "lr_schedule=cosine"): "cannot change on resume",
        ("--remedy", "rollout_n=2"): f"is trial lr=const{SLIDING_LR:g}_s1's own setting",
        ("--remedy", "entropy_coeff=0.01", "--trial", healthy.name): "no collapse rule stopped it",
        ("--remedy", "entropy_coeff=0.01", "--trial", "nope"): "--trial nope: no such trial",
        ("--remedy", "entropy_coeff=0.01", "--from", "worst"): "--from must be best or last_healthy",
    }
    for args, message in bad.items():
        refused = run_ablate(["rescue", str(out), *args], env)
        assert refused.returncode == 2 and message in refused.stderr, (args, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert len(_records(out)) == 4
    # `ablate rescue` branches the finished sweep's collapsed trial with another remedy, from its best checkpoint:
    # with this warm start the initial model (step 0, no checkpoint), so the branch trains from scratch with it.
    again = run_ablate(["rescue", str(out), "--remedy", "entropy_coeff=0.01"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    records = _records(out)
    (extra,) = [r for r in records.values() if r.remedy == "ent=0.01"]
    assert (extra.parent, extra.from_step) == (parent.id, parent.best_step) and extra.status in ("completed", "stopped")
    with SQLiteStore(out / "sweep.db") as store:
        argv = store.list_events(extra.id, kind="started")[0].data["argv"]
    assert "actor_rollout_ref.actor.entropy_coeff=0.01" in argv
    assert ("trainer.resume_mode=auto" in argv) == (extra.from_step == 0)
    assert _trained_steps(out / "trials" / extra.name / "metrics.0.jsonl")[0] == extra.from_step + 1
    assert len(records) == 5
    # The same command again resumes that rescue: nothing left to run, nothing added.
    assert run_ablate(["rescue", str(out), "--remedy", "entropy_coeff=0.01"], env).returncode == 0
    assert _records(out)[extra.name].attempts == extra.attempts and len(_records(out)) == 5


def test_a_driver_killed_during_rescues_resumes_them_with_nothing_trained_twice(tmp_path: Path, env: dict[str, str]) -> None:
    # This LR collapses at about step 30 with its best at step 0; the KL 0.1 branch starts from there. The budget is
    # long enough that its trainer cannot finish in the second or two the driver's workers outlive the driver.
    spec = write_spec(
        tmp_path,
        "rescue-kill",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: 2.0e-3}}]
        budget: {{max_steps: 300, eval_every: 5, save_every: 5}}
        objective: {{metric: {SCORE}, mode: max}}
        pruning: {{collapse: {{}}, rescue: {{remedies: [{{kl: 0.1}}], from: best}}}}
        """,
    )
    out = tmp_path / "out"
    driver = subprocess.Popen([*ABLATE, "run", str(spec), "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store, _ = wait_for_trial(
            out, lambda s, t: t.parent is not None and (t.last_step or 0) >= t.from_step + 15, timeout=300, what="branch 15 steps in"
        )
        store.close()
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        driver.kill()
    assert wait_until_no_trainers(out, timeout=60) == []
    before = _records(out)
    # The branch was cut short: its trainer died with the driver's workers, well before its last step.
    assert [r.status for r in before.values() if r.parent is not None] == ["running"], before
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    after = _records(out)
    assert set(after) == set(before)  # no branch started twice
    branches = [r for r in after.values() if r.parent is not None]
    assert branches and all(r.status in ("completed", "stopped") for r in after.values())
    assert any(r.attempts >= 2 for r in branches)
    with SQLiteStore(out / "sweep.db") as store:
        for branch in branches:
            resumed = {e.data["resume_step"] for e in store.list_events(branch.id, kind="retried") if "resume_step" in e.data}
            trained = [p.step for p in store.get_history(branch.id) if "actor/pg_loss" in p.metrics and p.step > branch.from_step]
            expected = [s for s in range(branch.from_step + 1, branch.last_step + 1) if s not in resumed]
            assert [s for s in trained if s not in resumed] == expected, branch.name
            # The parent's history up to the branch step is still there, once.
            assert [p.step for p in store.get_history(branch.id) if p.step <= branch.from_step][-1] == branch.from_step


def _verl_spec(tmp_path: Path, pruning: str, extra: str = "") -> Path:
    text = (Path(__file__).resolve().parents[1] / "sweeps" / "seed_ablation.yaml").read_text()
    text = text.replace("base: ../configs/", f"base: {Path(__file__).resolve().parents[1]}/configs/")
    text = text.replace("pruning:\n  collapse: {}\n", pruning) + extra
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_plan_checks_each_remedy_against_verls_config_and_refuses_bad_rescues(tmp_path: Path, env: dict[str, str]) -> None:
    spec = _verl_spec(tmp_path, "pruning:\n  collapse: {}\n  rescue: {remedies: [{kl: 0.05}, {entropy_coeff: 0.001}], from: last_healthy}\n")
    result = run_ablate(["plan", str(spec), "--json"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)
    branches = [r for r in rows if "branch_of" in r]
    assert [b["remedy"] for b in branches] == ["kl=0.05", "ent=0.001"] and all(not b["errors"] for b in branches)
    # The branch resumes from a checkpoint path on verl's own keys (a plan has none yet: resume from the latest).
    assert "actor_rollout_ref.actor.kl_loss_coef=0.05" in branches[0]["argv"]
    text = run_ablate(["plan", str(spec)], env).stdout
    assert "rescue: a trial a collapse rule stops is branched from its last healthy checkpoint" in text
    assert "kl=0.05 (valid), ent=0.001 (valid)" in text
    refused = {
        "pruning:\n  collapse: {}\n  rescue: {remedies: [{lr_schedule: {type: constant, lr: 1.0e-7}}]}\n": "cannot change on resume",
        "pruning:\n  collapse: {}\n  rescue: {remedies: [{rollout_n: 4}]}\n": "is trial",
        "pruning:\n  collapse: null\n  rescue: {remedies: [{kl: 0.05}]}\n": "`rescue` needs the collapse rules",
        "pruning:\n  collapse: {}\n  rescue: {remedies: [{kl: 0.05}, {kl: 0.05}]}\n": "repeats remedy [0]",
        "pruning:\n  collapse: {}\n  rescue: {remedies: [{kl: 0.05}], from: worst}\n": "from",
    }
    for pruning, message in refused.items():
        bad = run_ablate(["plan", str(_verl_spec(tmp_path, pruning))], env)
        assert bad.returncode == 2 and message in bad.stderr, (pruning, bad.stderr)
        assert "Traceback" not in bad.stderr and len([x for x in bad.stderr.splitlines() if x.startswith("error")]) == 1, bad.stderr


def test_a_verl_branch_resumes_from_its_copy_and_never_deletes_it(tmp_path: Path) -> None:
    from orchestrator.trainers import RunContext
    from orchestrator.trainers.verl import VerlTrainer

    parent = Trial(id="c" * 12, name="t", point="p", levels={}, values={}, seed=1, overrides={"actor_rollout_ref.rollout.n": 2})
    branch = branch_trial(parent, parse_remedy({"rollout_n": 8}), from_step=40)
    copy = tmp_path / "checkpoints" / "branch" / "global_step_40"
    lines = VerlTrainer().overrides(branch, RunContext(tmp_path, "p", resume_from=copy))
    assert "trainer.resume_mode=resume_path" in lines and f"trainer.resume_from_path={copy}" in lines
    assert "trainer.del_local_ckpt_after_load=false" in lines and "actor_rollout_ref.rollout.n=8" in lines
    assert "trainer.resume_mode=auto" in VerlTrainer().overrides(branch, RunContext(tmp_path, "p"))
