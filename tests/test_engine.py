"""`ablate run` end to end: real Ray Tune, the real miniature trainer, the real SQLite store.

Each test runs the CLI in a subprocess (its own Ray), as a user would, and reads the sweep store afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.collapse import SIGN_NAMES
from orchestrator.store import SQLiteStore

sys.path.insert(0, str(Path(__file__).parent))
from mini_sweeps import ABLATE, COLLAPSING_LR, HEALTHY_LR, run_ablate, trainers, wait_for_trial, wait_until_no_trainers, write_spec  # noqa: E402

@pytest.fixture(scope="module")
def env(minigrpo_cache: Path) -> dict[str, str]:
    return {**os.environ, "ABLATE_CACHE_DIR": str(minigrpo_cache), "WANDB_SILENT": "true"}


def _trials(out: Path) -> dict[str, object]:
    store = SQLiteStore(out / "sweep.db")
    sweep = store.list_sweeps()[0].id
    return {t.name: t for t in store.list_trials(sweep)}


def _steps_with(store: SQLiteStore, trial_id: str, key: str) -> list[int]:
    return [p.step for p in store.get_history(trial_id) if key in p.metrics]


def test_run_stops_a_collapsing_trial_and_keeps_best_checkpoints(tmp_path: Path, env: dict[str, str]) -> None:
    spec = write_spec(
        tmp_path,
        "collapse",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {COLLAPSING_LR}}}, {{type: constant, lr: {HEALTHY_LR}}}]
        budget: {{max_steps: 40, eval_every: 5, save_every: 5}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        tracking: {{wandb: {{project: ablate-test, mode: offline}}}}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _trials(out)
    collapsed = trials[f"lr=const{COLLAPSING_LR:g}_s1"]
    assert collapsed.status == "stopped"
    assert collapsed.stop_reason.startswith("collapse:")
    assert collapsed.collapse_step is not None
    # Stopped within two eval intervals of the onset, long before the budget ran out.
    assert collapsed.stop_step <= collapsed.collapse_step + 2 * 5
    assert collapsed.stop_step < 40
    assert collapsed.stop_evidence["reason"]
    store = SQLiteStore(out / "sweep.db")
    for trial in trials.values():
        kept = store.get_checkpoints(trial.id)["best"]
        assert Path(kept.path).is_dir(), trial.name
        assert Path(kept.path).parent == out.absolute() / "trials" / trial.name / "checkpoints" / "best"
        assert json.loads((Path(kept.path).parent / "best.json").read_text())["step"] == kept.step
        # Step 0 is the starting model (no checkpoint of it): otherwise the best eval step's checkpoint is kept.
        assert kept.step == trial.best_step or trial.best_step == 0, (trial.name, kept.step, trial.best_step)
        # wandb, offline: one run per trial under its directory.
        assert list((out / "trials" / trial.name / "wandb").glob("offline-run-*")), trial.name
    assert trainers(out) == []
    status = run_ablate(["status", str(out)], env)
    assert status.returncode == 0
    assert collapsed.stop_reason in status.stdout
    # Which metric judged the trials, and why.
    assert "objective (2 trial(s)): val-core/mini/reward/mean@1: named by the spec" in status.stdout
    # Leading signs are recorded as warnings (a sign's name and step), never as stops.
    rows = json.loads(run_ablate(["status", str(out), "--json"], env).stdout)["trials"]
    assert all({w["rule"] for w in row["warnings"]} <= {*SIGN_NAMES, "entropy"} for row in rows), rows
    # The report reads the same store: the recorded stop is the collapse, each trial's best checkpoint is named.
    report = run_ablate(["report", str(out), "--json"], env)
    assert report.returncode == 0, report.stderr[-3000:]
    summary = json.loads(report.stdout)
    runs = {r["run"]: r for r in summary["runs"]}
    assert runs[collapsed.name]["collapse"]["rule"] == collapsed.stop_reason.split(":", 1)[1]
    assert runs[collapsed.name]["collapse"]["step"] == collapsed.collapse_step
    assert set(summary["best_checkpoints"]) == set(trials)
    assert (out / "report" / "report.html").is_file() and (out / "report" / "trials.csv").is_file()
    markdown = (out / "report" / "report.md").read_text()
    assert "## Which factor prevents collapse, by how much" in markdown and "collapse rate" in markdown
    # The HTML opens in headless Chromium with every figure (inline SVG) laid out, one validation panel per
    # configuration (the test skips here where Chromium is absent, after the checks above; under CI that skip fails it).
    from report_probe import probe_report

    probe = probe_report(out / "report" / "report.html", tmp_path)
    figures = probe["figures"]
    assert "fig-validation" in figures and all(b["width"] > 200 and b["height"] > 200 for b in figures.values()), figures
    assert len(probe["panels"]) == len(summary["configurations"]), probe["panels"]


def test_run_asha_stops_a_weak_trial(tmp_path: Path, env: dict[str, str]) -> None:
    spec = write_spec(
        tmp_path,
        "asha",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {HEALTHY_LR}}}, {{type: constant, lr: {COLLAPSING_LR}}}, {{type: constant, lr: 8.0e-4}}]
        budget: {{max_steps: 40, eval_every: 5, save_every: 5}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        pruning: {{collapse: null, asha: {{grace_steps: 10, reduction_factor: 2, signal: ema}}}}
        execution: {{max_concurrent_trials: 1}}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _trials(out)
    weak = trials[f"lr=const{COLLAPSING_LR:g}_s1"]
    assert weak.stop_reason == "asha"
    assert weak.status == "stopped"
    assert weak.stop_step is not None and weak.stop_step < 40
    assert trials[f"lr=const{HEALTHY_LR:g}_s1"].stop_reason == "completed"
    # The trial after the stopped one ran (its worker is the stopped trial's, handed on once that trial ended).
    last = trials["lr=const0.0008_s1"]
    assert last.stop_reason in ("completed", "asha") and (last.last_step or 0) > 0
    assert trainers(out) == []


def test_a_resumed_sweep_keeps_asha_s_rungs(tmp_path: Path, env: dict[str, str]) -> None:
    """Ctrl-C once the healthy trial has finished, then resume: Tune restores its scheduler empty, so without the
    re-recorded rungs the weak trial (usually not yet at rung 10 when interrupted) would train to its end."""
    spec = write_spec(
        tmp_path,
        "asha-resume",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {HEALTHY_LR}}}, {{type: constant, lr: {COLLAPSING_LR}}}]
        budget: {{max_steps: 100, eval_every: 5, save_every: 5}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        pruning: {{collapse: null, asha: {{grace_steps: 10, reduction_factor: 2, signal: ema}}}}
        execution: {{max_concurrent_trials: 1}}
        """,
    )
    out = tmp_path / "out"
    driver = subprocess.Popen([*ABLATE, "run", str(spec), "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store, _ = wait_for_trial(
            out, lambda store, t: t.name == f"lr=const{HEALTHY_LR:g}_s1" and t.status == "completed", timeout=300, what="completed"
        )
        store.close()
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode in (0, 130), stderr[-3000:]
    resumed = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = _trials(out)
    assert trials[f"lr=const{HEALTHY_LR:g}_s1"].stop_reason == "completed"
    weak = trials[f"lr=const{COLLAPSING_LR:g}_s1"]
    assert weak.stop_reason == "asha" and weak.last_step < 100, (weak.stop_reason, weak.last_step)


def test_run_retries_a_crashed_trainer_and_resumes_from_its_checkpoint(tmp_path: Path, env: dict[str, str]) -> None:
    """A miniature step takes about 0.02 s: the budget (200 steps) leaves seconds between the poll that sees step 17
    and the trainer's end, so the kill lands mid-run."""
    spec = write_spec(
        tmp_path,
        "crash",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {HEALTHY_LR}}}]
        budget: {{max_steps: 200, eval_every: 50, save_every: 5}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        pruning: {{collapse: null}}
        execution: {{max_failures: 2}}
        """,
    )
    out = tmp_path / "out"
    driver = subprocess.Popen([*ABLATE, "run", str(spec), "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        trial_id, pgid = _wait_for_step(out, 17, timeout=300)
        os.killpg(pgid, signal.SIGKILL)  # the trainer dies mid-run, as on an OOM kill
        stdout, stderr = driver.communicate(timeout=400)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    store = SQLiteStore(out / "sweep.db")
    trial = store.get_trial(trial_id)
    assert trial.status == "completed" and trial.stop_reason == "completed"
    assert trial.attempts == 2
    assert [e.kind for e in store.list_events(trial_id) if e.kind in ("failed", "retried")][:2] == ["failed", "retried"]
    retried = [e for e in store.list_events(trial_id, kind="retried") if "resume_step" in e.data]
    assert retried and retried[0].data["resume_step"] >= 15
    # Every step is there once, with its training metrics; evals on every 50th step. One exception, as in verl:
    # a trainer killed after saving step N's checkpoint but before logging step N never logs step N's training
    # metrics, since the next attempt resumes at N + 1.
    resume = retried[0].data["resume_step"]
    expected = [step for step in range(1, 201) if step != resume]
    assert [s for s in _steps_with(store, trial_id, "actor/pg_loss") if s != resume] == expected
    # As verl does, the resumed trainer validates again at the step it resumes from.
    assert _steps_with(store, trial_id, "val-core/mini/reward/mean@1") == sorted({0, 50, 100, 150, 200, resume})
    assert (out / "trials" / trial.name / "metrics.1.jsonl").is_file()  # each attempt its own metrics file


def _wait_for_step(out: Path, step: int, timeout: float) -> tuple[str, int]:
    """Wait until a running trial has logged `step`; return its id and its trainer's process group."""

    def ready(store: SQLiteStore, trial: Any) -> bool:
        return trial.status == "running" and (trial.last_step or 0) >= step

    store, trial = wait_for_trial(out, ready, timeout, f"reached step {step}")
    try:
        return trial.id, int(store.list_events(trial.id, kind="started")[-1].data["pgid"])
    finally:
        store.close()


def test_run_exits_1_naming_the_trials_that_failed_after_their_retries(tmp_path: Path, env: dict[str, str]) -> None:
    """A sweep in which one trial's trainer fails at every attempt (an LR the miniature refuses, let through by
    --no-validate) did not succeed: exit 1, the failed trial named on stderr with its attempts and log; the other
    trial completes as usual."""
    spec = write_spec(
        tmp_path,
        "failing",
        f"""\
        factors:
          actor_rollout_ref.actor.optim.lr: [{HEALTHY_LR}, not-a-number]
        budget: {{max_steps: 10, eval_every: 5, save_every: 5}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        execution: {{max_failures: 1}}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out), "--no-validate"], env)
    assert result.returncode == 1, result.stderr[-3000:]
    store = SQLiteStore(out / "sweep.db")
    trials = {t.name: t for t in store.list_trials("failing")}
    failed = [t for t in trials.values() if t.status == "failed"]
    assert len(failed) == 1 and len(trials) == 2
    bad = failed[0]
    assert bad.attempts == 2 and "not-a-number" in bad.overrides["actor_rollout_ref.actor.optim.lr"]
    (good,) = (t for t in trials.values() if t is not bad)
    assert good.status == "completed"
    # The last lines of stderr: one per failed trial (the trainer's own error lines come earlier), then the count.
    *named, last = result.stderr.strip().splitlines()[-2:]
    assert named[0].startswith(f"error: trial {bad.name} ({bad.id}) failed after 2 attempt(s), exit code 2; see ")
    assert "must be a number" in named[0] and str(out / "trials" / bad.name) in named[0]
    assert last.startswith("error: 1 of 2 trials failed after their retries")
    assert f"error: trial {good.name}" not in result.stderr


def test_run_resumes_after_the_driver_is_killed(tmp_path: Path, env: dict[str, str]) -> None:
    """The budget (150 steps of about 0.02 s) keeps the first trials running seconds after the poll that sees step 12."""
    spec = write_spec(
        tmp_path,
        "resume",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {HEALTHY_LR}}}]
        seeds: 3
        budget: {{max_steps: 150, eval_every: 50, save_every: 5}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        pruning: {{collapse: null}}
        execution: {{max_concurrent_trials: 2}}
        """,
    )
    out = tmp_path / "out"
    driver = subprocess.Popen([*ABLATE, "run", str(spec), "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_step(out, 12, timeout=300)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        driver.kill()
    # No trainer outlives the driver (the trial workers die with it, and each trainer's guard with them).
    assert wait_until_no_trainers(out, timeout=60) == []
    before = _trials(out)
    finished_before = {name for name, t in before.items() if t.status == "completed"}
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    store = SQLiteStore(out / "sweep.db")
    after = _trials(out)
    assert all(t.status == "completed" for t in after.values()), {n: t.status for n, t in after.items()}
    for name in finished_before:
        assert after[name].attempts == before[name].attempts  # finished trials were not rerun
    assert any(t.attempts >= 2 for t in after.values())  # the interrupted ones resumed
    for trial in after.values():
        # A resumed trainer validates again at the step it resumed from, as verl does; a trainer killed between
        # saving that step's checkpoint and logging it never logs its training metrics (verl's order too).
        resumed = {e.data["resume_step"] for e in store.list_events(trial.id, kind="retried") if "resume_step" in e.data}
        trained = [s for s in _steps_with(store, trial.id, "actor/pg_loss") if s not in resumed]
        assert trained == [s for s in range(1, 151) if s not in resumed], trial.name
        assert _steps_with(store, trial.id, "val-core/mini/reward/mean@1") == sorted({0, 50, 100, 150} | resumed), trial.name


def test_run_packs_two_gpu_trials_on_four_logical_gpus(tmp_path: Path, env: dict[str, str]) -> None:
    spec = write_spec(
        tmp_path,
        "gpus",
        """\
        factors:
          entropy_coeff: [0]
        seeds: 4
        budget: {max_steps: 15, eval_every: 5, save_every: 5}
        objective: {metric: val-core/mini/reward/mean@1, mode: max}
        pruning: {collapse: null}
        resources: {gpus: 2, cpus: 0.5}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out), "--gpus", "4", "--cpus", "4"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    store = SQLiteStore(out / "sweep.db")
    spans = []
    for trial in store.list_trials("gpus"):
        (started,) = store.list_events(trial.id, kind="started")
        (ended,) = store.list_events(trial.id, kind="completed")
        gpus = started.data["gpus"]
        assert len(gpus) == 2
        spans.append((started.time, ended.time, set(gpus)))
    for i, (start_a, end_a, gpus_a) in enumerate(spans):
        running_with = [gpus_b for j, (start_b, end_b, gpus_b) in enumerate(spans) if j != i and start_b < end_a and start_a < end_b]
        assert len(running_with) <= 1 or all(not (g & gpus_a) for g in running_with)
        assert all(not (gpus_a & gpus_b) for gpus_b in running_with), spans
    # With 4 GPUs and 2 per trial, some trials ran side by side, on disjoint GPUs.
    assert any(s_b < e_a and s_a < e_b for i, (s_a, e_a, _) in enumerate(spans) for j, (s_b, e_b, _) in enumerate(spans) if i < j)


def test_run_ctrl_c_stops_every_trainer_and_leaves_the_sweep_resumable(tmp_path: Path, env: dict[str, str]) -> None:
    spec = write_spec(
        tmp_path,
        "interrupt",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {HEALTHY_LR}}}]
        seeds: 2
        budget: {{max_steps: 200, eval_every: 10, save_every: 10}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        pruning: {{collapse: null}}
        """,
    )
    out = tmp_path / "out"
    driver = subprocess.Popen([*ABLATE, "run", str(spec), "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_step(out, 5, timeout=300)
        driver.send_signal(signal.SIGINT)
        stdout, stderr = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 130, stderr[-3000:]
    assert "resume with" in stdout
    assert "Traceback" not in stderr
    assert wait_until_no_trainers(out, timeout=30) == []
    assert {t.status for t in _trials(out).values()} == {"pending"}


def test_run_refuses_a_trial_the_cluster_cannot_hold(tmp_path: Path, env: dict[str, str]) -> None:
    spec = write_spec(
        tmp_path,
        "toobig",
        """\
        factors:
          entropy_coeff: [0]
        budget: {max_steps: 10, eval_every: 5, save_every: 5}
        resources: {gpus: 2}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out), "--cpus", "2"], env, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: each trial needs 2 GPU(s) (resources.gpus) but the Ray cluster has 0; use a GPU cluster (--address), "
        "or declare logical GPUs with --gpus"
    ]
    assert "Traceback" not in result.stderr
    assert {t.status for t in _trials(out).values()} == {"pending"}  # nothing launched


def test_run_refuses_a_slurm_spec_where_there_is_no_slurm(tmp_path: Path, env: dict[str, str]) -> None:
    spec = write_spec(
        tmp_path,
        "slurm",
        """\
        factors:
          entropy_coeff: [0]
        budget: {max_steps: 10, eval_every: 5, save_every: 5}
        cluster: {slurm: {partition: gpu}}
        """,
    )
    no_slurm = {**env, "PATH": str(Path(sys.executable).parent)}  # the interpreter, and no sbatch
    result = run_ablate(["run", str(spec), "--out", str(tmp_path / "out")], no_slurm, timeout=120)
    assert result.returncode == 2
    assert "error: `cluster: slurm` needs Slurm's sbatch on PATH; run ablate on a Slurm login node" in result.stderr
    assert not (tmp_path / "out").exists()


def test_leftover_check_recognises_only_this_trials_guard(tmp_path: Path) -> None:
    """A recorded process group is killed only while its leader is still the trial's guard (ids get reused)."""
    from orchestrator.launchers.local import is_guard_of as _is_guard_of
    from orchestrator.launchers import LocalLauncher
    from orchestrator.trainers import Command

    workdir = tmp_path / "trials" / "t"
    launcher = LocalLauncher(grace_s=1.0)
    handle = launcher.start(
        Command(argv=(sys.executable, "-c", "import time; time.sleep(60)", f"trainer.default_local_dir={workdir}/checkpoints")),
        workdir,
    )
    try:
        pgid = launcher.pgid(handle)
        # A process just started shows an empty command line for a moment, while it execs.
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{pgid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _is_guard_of(pgid, workdir)
        assert not _is_guard_of(pgid, tmp_path / "trials" / "other")
        assert not _is_guard_of(os.getpid(), workdir)
    finally:
        launcher.stop(handle)
    assert not _is_guard_of(pgid, workdir)
