"""Sweeps on a real Slurm: one sbatch job per trial attempt, and `slurm/driver.sbatch` running a whole sweep.

The session fixture installs Debian's slurm-wlm and munge when they are missing (root and apt-get needed) and starts
a single-node cluster with 8 CPUs and 4 logical GPUs (tests/slurm_cluster.py). Every test runs `ablate` in a
subprocess, as a user would, and checks the sweep store and Slurm's own record of the jobs. Skipped, with the
reason, only where Slurm cannot be installed or started; `ABLATE_TEST_SLURM=0` skips them on purpose.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import yaml

from orchestrator.launchers import Status
from orchestrator.launchers.slurm import SlurmLauncher, SlurmOptions, job_state
from orchestrator.store import SQLiteStore
from orchestrator.trainers import Command

sys.path.insert(0, str(Path(__file__).parent))
from mini_sweeps import ABLATE, COLLAPSING_LR, HEALTHY_LR, ROOT, run_ablate, trainers, wait_for_trial, write_spec  # noqa: E402
from slurm_cluster import Cluster, SlurmUnavailable, start_cluster  # noqa: E402

# One test cluster (fixed ports: slurmctld's, the slurmd's) for the whole module: under xdist its tests run on one
# worker, one after another, as they would serially.
pytestmark = pytest.mark.xdist_group("slurm")

# How Slurm shows a job waiting for GPUs others hold: Resources, or Priority while a job ahead of it waits too.
_WAITING_FOR_GPUS = ("PENDING (Resources)", "PENDING (Priority)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.environ.get("ABLATE_TEST_SLURM") == "0":
        pytest.skip("ABLATE_TEST_SLURM=0: the Slurm tests are switched off")
    try:
        started = start_cluster(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as exc:
        pytest.skip(f"no Slurm here: {exc}")
    yield started
    started.stop()


@pytest.fixture(scope="module", autouse=True)
def _no_ray_address_left_behind() -> Iterator[None]:
    """The Slurm tests as a whole leave no Ray address file (`ray_current_cluster`) pointing at a job's dead Ray
    head: a plain `ray.init()` on this machine would try to join it and fail. Should one appear, it is removed (the
    machine is left as found) and reported."""
    before = _ray_addresses()
    yield
    stale = {}
    for path, address in _ray_addresses().items():
        if address and address != before[path] and not _listening(address):
            stale[str(path)] = address
            path.unlink(missing_ok=True)
    assert not stale, f"the Slurm tests left Ray address files pointing at dead Ray heads: {stale}"


@pytest.fixture
def forgetful(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster with MinJobAge=2 for one test: slurmctld forgets a finished job within about 10 s."""
    cluster.min_job_age(2)
    try:
        yield cluster
    finally:
        cluster.min_job_age(3600)


@pytest.fixture(scope="module")
def env(cluster: Cluster, minigrpo_cache: Path) -> dict[str, str]:
    return {**os.environ, **cluster.env, "ABLATE_CACHE_DIR": str(minigrpo_cache), "WANDB_SILENT": "true"}


@pytest.fixture(autouse=True)
def _slurm_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The launcher and scontrol calls made from this process find the test cluster too.
    monkeypatch.setenv("SLURM_CONF", env["SLURM_CONF"])


def _store_trials(out: Path) -> tuple[SQLiteStore, dict[str, object]]:
    store = SQLiteStore(out / "sweep.db")
    sweep = store.list_sweeps()[0].id
    return store, {t.name: t for t in store.list_trials(sweep)}


def _job(job_id: str) -> dict[str, str]:
    """Return Slurm's record of a job (`scontrol show job`), as key -> value."""
    text = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def _job_ids(store: SQLiteStore, trial_id: str) -> list[str]:
    return [str(e.data["job_id"]) for e in store.list_events(trial_id, kind="started")]


def test_a_rescue_branch_runs_as_a_slurm_job(tmp_path: Path, env: dict[str, str]) -> None:
    """The parent collapses near step 30 (its best: step 0); its KL branch is submitted as a job of its own."""
    spec = write_spec(
        tmp_path,
        "slurm-rescue",
        """\
        factors:
          lr_schedule: [{type: constant, lr: 2.0e-3}]
        budget: {max_steps: 60, eval_every: 5, save_every: 5}
        objective: {metric: val-core/mini/reward/mean@1, mode: max}
        pruning: {collapse: {}, rescue: {remedies: [{kl: 0.1}]}}
        cluster: {slurm: {time: "00:20:00", partition: debug}}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    store, trials = _store_trials(out)
    parent = trials["lr=const_s1"]
    branch = trials["lr=const_s1+kl=0.1"]
    assert parent.stop_reason.is_collapse and (branch.parent, branch.remedy) == (parent.id, "kl=0.1")
    assert branch.status in ("completed", "stopped") and branch.last_step > branch.from_step
    (job_id,) = _job_ids(store, branch.id)
    assert job_id not in _job_ids(store, parent.id)
    job = _job(job_id)
    assert job["JobName"] == "ablate-slurm-rescue-lr_const_s1_kl_0.1"  # Slurm-safe: `=` and `+` become `_`
    assert job["JobState"] in ("COMPLETED", "CANCELLED")
    script = (out / "trials" / branch.name / "attempt-0.sbatch").read_text()
    assert "actor_rollout_ref.actor.kl_loss_coef=0.1" in script
    kinds = [e.kind for e in store.list_events(branch.id)]
    assert kinds.index("branched") < kinds.index("started") < kinds.index("queued")


def test_sweep_runs_as_slurm_jobs_and_a_collapse_scancels_its_job(tmp_path: Path, env: dict[str, str]) -> None:
    """A miniature step takes about 0.02 s, so the budget is long (300 steps): the stopped job must still be running
    when the stop comes, seconds after the onset, for Slurm to record it CANCELLED rather than COMPLETED."""
    spec = write_spec(
        tmp_path,
        "slurm-collapse",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {COLLAPSING_LR}}}, {{type: constant, lr: {HEALTHY_LR}}}]
        budget: {{max_steps: 300, eval_every: 5, save_every: 5}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        cluster: {{slurm: {{time: "00:20:00", partition: debug, extra_sbatch: ["--comment=ablate-test"]}}}}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    store, trials = _store_trials(out)
    collapsing = trials[f"lr=const{COLLAPSING_LR:g}_s1"]
    healthy = trials[f"lr=const{HEALTHY_LR:g}_s1"]
    assert healthy.status == "completed" and healthy.stop_reason == "completed" and healthy.last_step == 300
    assert collapsing.status == "stopped" and collapsing.stop_reason.startswith("collapse:")
    assert collapsing.stop_step < 300
    # Each trial ran as one sbatch job, with the spec's options, and Slurm recorded how each job ended.
    for trial, slurm_state in ((healthy, "COMPLETED"), (collapsing, "CANCELLED")):
        (job_id,) = _job_ids(store, trial.id)
        job = _job(job_id)
        assert job["JobState"] == slurm_state
        assert job["Partition"] == "debug" and job["Comment"] == "ablate-test"
        assert job["JobName"] == f"ablate-slurm-collapse-{trial.name}".replace("=", "_")
        assert job["StdErr"] == str(out / "trials" / trial.name / "attempt-0.stderr.log")
        kinds = [e.kind for e in store.list_events(trial.id)]
        assert kinds.index("started") < kinds.index("queued") < kinds.index("running")
        assert Path(store.get_checkpoints(trial.id)["best"].path).is_dir()
    assert store.get_checkpoints(healthy.id)["best"].step == healthy.best_step
    # The stop came within one eval of the rule's onset, not at the end of the budget.
    assert collapsing.stop_step - collapsing.collapse_step <= 5
    status = run_ablate(["status", str(out)], env)
    assert status.returncode == 0 and "collapse:" in status.stdout


def test_an_asha_stop_scancels_the_job_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    """One job at a time (`max_jobs: 1`), so the weak trial reaches ASHA's rungs after the healthy one, as in the
    engine's own ASHA test: concurrent trials reach a rung in any order, and the first to reach it always continues. The budget
    is long (300 steps, about 0.02 s each) so that a stopped job is still running when the stop comes. A trial follows
    the stopped one: its Tune worker is handed on only after the cancelled job has left the queue (seconds, not the
    2 s Tune waits by default), and must not be lost meanwhile."""
    spec = write_spec(
        tmp_path,
        "slurm-asha",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {HEALTHY_LR}}}, {{type: constant, lr: {COLLAPSING_LR}}}, {{type: constant, lr: 8.0e-4}}]
        budget: {{max_steps: 300, eval_every: 5, save_every: 5}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        pruning: {{collapse: null, asha: {{grace_steps: 10, reduction_factor: 2, signal: ema}}}}
        cluster: {{slurm: {{time: "00:20:00", max_jobs: 1}}}}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    store, trials = _store_trials(out)
    stopped = [t for t in trials.values() if t.stop_reason == "asha"]
    assert stopped, {t.name: t.stop_reason for t in trials.values()}
    for trial in stopped:
        (job_id,) = _job_ids(store, trial.id)
        job = _job(job_id)
        assert job["JobState"] == "CANCELLED"
        # The job ended within seconds of the decision, not at the trial's next eval or the sweep's end.
        decided = store.list_events(trial.id, kind="stopped")[0].time
        assert _time(job["EndTime"]) - decided < 20
        assert trial.last_step < 300
    weak = trials[f"lr=const{COLLAPSING_LR:g}_s1"]
    assert weak.stop_reason == "asha"
    last = trials["lr=const0.0008_s1"]
    assert last.stop_reason in ("completed", "asha") and (last.last_step or 0) > 0


def test_a_failed_and_an_interrupted_job_are_resubmitted_and_resume(tmp_path: Path, env: dict[str, str]) -> None:
    """The budget is long (300 steps, about 0.02 s each) so that each attempt is still running when it is killed."""
    spec = write_spec(
        tmp_path,
        "slurm-retry",
        f"""\
        factors:
          lr_schedule: [{{type: constant, lr: {HEALTHY_LR}}}]
        budget: {{max_steps: 300, eval_every: 10, save_every: 5}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        pruning: {{collapse: null}}
        execution: {{max_failures: 2}}
        cluster: {{slurm: {{time: "00:20:00"}}}}
        """,
    )
    out = tmp_path / "out"
    driver = subprocess.Popen([*ABLATE, "run", str(spec), "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # 1. The trainer dies (an OOM kill, say): the job FAILS with its exit code, and is retried.
        trial_id = _wait_for(out, lambda store, t: len(_job_ids(store, t.id)) == 1 and (t.last_step or 0) >= 12)
        (trainer,) = trainers(out)
        trainer.send_signal(signal.SIGKILL)
        # 2. Someone cancels the second job (or the cluster preempts it): it is resubmitted and resumes.
        # The second attempt's own metrics file, so that steps the first attempt logged do not count.
        second_metrics = out / "trials" / "lr=const_s1" / "metrics.1.jsonl"
        _wait_for(out, lambda store, t: len(_job_ids(store, t.id)) == 2 and _text(second_metrics).count("\n") >= 6)
        store = SQLiteStore(out / "sweep.db")
        second = _job_ids(store, trial_id)[1]
        subprocess.run(["scancel", second], check=True)
        stdout, stderr = driver.communicate(timeout=400)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    store = SQLiteStore(out / "sweep.db")
    trial = store.get_trial(trial_id)
    assert trial.status == "completed" and trial.attempts == 3 and trial.last_step == 300
    first, second, third = _job_ids(store, trial_id)
    assert _job(first)["JobState"] == "FAILED" and _job(first)["ExitCode"] == "137:0"
    assert _job(second)["JobState"] == "CANCELLED" and _job(third)["JobState"] == "COMPLETED"
    failed = store.list_events(trial_id, kind="failed")[0]
    assert failed.data["exit_code"] == 137 and failed.data["log"].endswith("attempt-0.stderr.log")
    interrupted = store.list_events(trial_id, kind="interrupted")
    assert [e.data["raw"] for e in interrupted] == ["CANCELLED outside ablate"]
    resumes = [e.data["resume_step"] for e in store.list_events(trial_id, kind="retried") if "resume_step" in e.data]
    assert len(resumes) == 2 and 10 <= resumes[0] < resumes[1]
    # Each attempt resumed from the latest checkpoint: nothing before the resume step was trained again.
    steps = [p.step for p in store.get_history(trial_id) if "actor/pg_loss" in p.metrics]
    assert len(steps) == len(set(steps)) and steps[-1] == 300
    assert all(s in steps for s in range(1, 301) if s not in resumes)


def test_an_optuna_search_runs_its_samples_as_slurm_jobs(tmp_path: Path, env: dict[str, str]) -> None:
    """`search: optuna` on Slurm: each sampled configuration registers itself and runs as its own sbatch job."""
    lr = "actor_rollout_ref.actor.optim.lr"
    spec = write_spec(
        tmp_path,
        "slurm-search",
        f"""\
        factors:
          kl: [{{use_kl_loss: true, coef: 0.01, type: low_var_kl}}]
        budget: {{max_steps: 10, eval_every: 5, save_every: 5, hours_per_trial: 2}}
        objective: {{metric: val-core/mini/reward/mean@1, mode: max}}
        pruning: {{asha: {{grace_steps: 5, reduction_factor: 2}}}}
        cluster: {{slurm: {{time: "00:20:00", max_jobs: 1}}}}
        search:
          type: optuna
          num_samples: 3
          space:
            {lr}: {{low: 1.0e-3, high: 2.0e-2, log: true}}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    store, trials = _store_trials(out)
    assert len(trials) == 3 and len({t.overrides[lr] for t in trials.values()}) == 3
    for trial in trials.values():
        assert trial.status in ("completed", "stopped") and trial.best_score is not None, trial
        (job_id,) = _job_ids(store, trial.id)
        job = _job(job_id)
        # A stopped trial's job is cancelled, unless its last steps (a fraction of a second at this budget) ended it
        # first; the cancellation itself is the collapse and ASHA tests' subject.
        expected = ("COMPLETED",) if trial.status == "completed" else ("CANCELLED", "COMPLETED")
        assert job["JobState"] in expected, (trial.name, trial.status, job["JobState"])
        # The job ran its trial's batch script, with the sampled learning rate.
        (started,) = store.list_events(trial.id, kind="started")
        assert job["Command"] == started.data["script"] == str(out / "trials" / trial.name / "attempt-0.sbatch")
        (word,) = [w for w in started.data["argv"] if w.startswith(f"{lr}=")]
        assert float(word.split("=", 1)[1]) == pytest.approx(trial.overrides[lr])
    report = run_ablate(["report", str(out), "--json"], env)
    assert report.returncode == 0, report.stderr[-3000:]
    assert len(json.loads(report.stdout)["search"]) == 3


def test_gpu_jobs_wait_in_slurms_queue_for_free_gpus_and_each_trainer_sees_its_jobs_gpus(
    tmp_path: Path, env: dict[str, str], cluster: Cluster
) -> None:
    """3 trials of 2 GPUs on 4 logical GPUs: all three are submitted, Slurm runs two at a time, and each trainer
    process (the miniature trainer, started by its trial's batch script) has in CUDA_VISIBLE_DEVICES exactly the
    GPUs Slurm's record of its job gives (`scontrol show job -d`: GRES=gpu:2(IDX:...)), as SLURM_JOB_GPUS says;
    two jobs running at once have disjoint GPUs.

    Each job trains long enough (1000 steps, tens of seconds) to outlast the few seconds Tune may take to start the
    third trial's proxy on a loaded machine, so that all three are in Slurm's queue at once."""
    spec = write_spec(
        tmp_path,
        "slurm-gpus",
        """\
        factors:
          entropy_coeff: [0, 0.001, 0.01]
        budget: {max_steps: 1000, eval_every: 250, save_every: 250}
        pruning: {collapse: null}
        resources: {gpus: 2}
        cluster: {slurm: {time: "00:20:00"}}
        """,
    )
    out = tmp_path / "out"
    with (tmp_path / "driver.log").open("w") as log:
        driver = subprocess.Popen([*ABLATE, "run", str(spec), "--out", str(out)], env=env, stdout=log, stderr=log, text=True)
        try:
            seen, together = _watch_trainer_gpus(out, driver)
            driver.wait(timeout=60)
        finally:
            driver.kill()
    assert driver.returncode == 0, (tmp_path / "driver.log").read_text()[-3000:]
    store, trials = _store_trials(out)
    assert {t.status for t in trials.values()} == {"completed"}
    job_ids = [_job_ids(store, t.id)[0] for t in trials.values()]
    jobs = [_job(job_id) for job_id in job_ids]
    assert all(job["TresPerNode"] == "gres:gpu:2" for job in jobs)
    spans = [(_time(job["StartTime"]), _time(job["EndTime"])) for job in jobs]
    submits = [_time(job["SubmitTime"]) for job in jobs]
    # Every job was submitted before the first one ended: concurrency was left to Slurm.
    assert max(submits) <= min(end for _, end in spans)
    # Never more than 4 GPUs' worth at once, and one job waited for GPUs to free up.
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2
    assert max(start for start, _ in spans) >= min(end for _, end in spans)
    # The waiting job was shown queued with Slurm's reason.
    reasons = [e.data["reason"] for t in trials.values() for e in store.list_events(t.id, kind="queued")]
    assert any(r in _WAITING_FOR_GPUS for r in reasons), reasons
    if cluster.gpus_unbound:
        pytest.skip(f"Slurm cannot bind the logical GPUs here: {cluster.gpus_unbound}")
    # Each trainer saw exactly its job's GPUs, by their indices on the node (no device cgroup here, so they are not
    # renumbered from 0 per job).
    assert sorted(seen) == sorted(job_ids), seen
    for job_id, saw in seen.items():
        indices = saw["IDX"]
        assert isinstance(indices, list) and len(indices) == 2, (job_id, saw)
        assert saw["CUDA_VISIBLE_DEVICES"] == saw["SLURM_JOB_GPUS"] == ",".join(map(str, indices)), (job_id, saw)
    # Jobs that ran at once had different GPUs.
    assert together, "no two trial jobs were seen running at once"
    for pair in together:
        first, second = (set(seen[job_id]["IDX"]) for job_id in pair)  # type: ignore[arg-type]
        assert not first & second and first | second <= set(range(cluster.n_gpus)), seen


def _watch_trainer_gpus(out: Path, driver: subprocess.Popen[str]) -> tuple[dict[str, dict[str, object]], set[frozenset[str]]]:
    """Watch a running sweep's trainer processes until the driver exits: return, per Slurm job, what its trainer
    saw (CUDA_VISIBLE_DEVICES, SLURM_JOB_GPUS) and the GPU indices Slurm allocated to the job (IDX), and the pairs
    of jobs whose trainers were seen running at once."""
    seen: dict[str, dict[str, object]] = {}
    together: set[frozenset[str]] = set()
    deadline = time.monotonic() + 420
    while driver.poll() is None and time.monotonic() < deadline:
        running = set()
        for proc in trainers(out):
            job_id = _environ(proc).get("SLURM_JOB_ID", "")
            if not job_id:
                continue
            running.add(job_id)
            if job_id not in seen:
                environ = _environ(proc)
                seen[job_id] = {
                    "CUDA_VISIBLE_DEVICES": environ.get("CUDA_VISIBLE_DEVICES"),
                    "SLURM_JOB_GPUS": environ.get("SLURM_JOB_GPUS"),
                    "IDX": _job_gpu_indices(job_id),
                }
        together |= {frozenset((a, b)) for a in running for b in running if a < b}
        time.sleep(0.5)
    return seen, together


def test_a_partition_slurm_does_not_have_is_refused_before_anything_starts(tmp_path: Path, env: dict[str, str]) -> None:
    spec = write_spec(
        tmp_path,
        "slurm-bad",
        """\
        factors:
          entropy_coeff: [0]
        budget: {max_steps: 10, eval_every: 5, save_every: 5}
        cluster: {slurm: {partition: nosuchpartition}}
        """,
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out), "--no-validate"], env, timeout=120)
    assert result.returncode == 2
    assert "error: Slurm would refuse the trial jobs: sbatch: error: invalid partition specified" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_sweep_directory_a_directive_cannot_carry_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    spec = write_spec(
        tmp_path,
        "slurm-path",
        """\
        factors:
          entropy_coeff: [0]
        budget: {max_steps: 10, eval_every: 5, save_every: 5}
        cluster: {slurm: {time: "00:05:00"}}
        """,
    )
    out = tmp_path / "two words"
    result = run_ablate(["run", str(spec), "--out", str(out), "--no-validate"], env, timeout=120)
    assert result.returncode == 2
    assert "a Slurm trial directory may hold only" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_argv_words_reach_the_trainer_exactly_and_run_no_shell(tmp_path: Path, cluster: Cluster) -> None:
    """Quotes, `$(...)`, `;` and newlines in argv words are data in the batch script, never shell code."""
    marker = tmp_path / "injected"
    words = ["a b", "$(touch " + str(marker) + ")", "x'; touch " + str(marker) + "; echo '", '"q"', "line\nbreak", "`id`"]
    program = "import json, sys; print(json.dumps(sys.argv[1:]))"
    launcher = SlurmLauncher(SlurmOptions(time="00:05:00"), state_poll_s=0.5)
    handle = launcher.start(Command((sys.executable, "-c", program, *words)), tmp_path / "trial")
    state = launcher.wait(handle, timeout_s=120)
    assert state.status is Status.SUCCEEDED, (state, launcher.stderr_tail(handle))
    stdout = (tmp_path / "trial" / "attempt-0.stdout.log").read_text()
    import json

    printed = [json.loads(line) for line in stdout.splitlines() if line.startswith("[")]
    assert printed == [words]
    assert not marker.exists()
    assert (tmp_path / "trial" / "attempt-0.exit").read_text().strip() == "0"


def test_a_job_exit_code_and_stderr_are_kept_and_a_stop_cancels_a_queued_job(tmp_path: Path, cluster: Cluster) -> None:
    launcher = SlurmLauncher(SlurmOptions(time="00:05:00"), state_poll_s=0.5)
    failing = launcher.start(Command((sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)")), tmp_path / "fail")
    state = launcher.wait(failing, timeout_s=120)
    assert (state.status, state.exit_code) == (Status.FAILED, 3)
    assert launcher.stderr_tail(failing).splitlines()[-1] == "boom"
    # A job asking for more GPUs than are free waits in the queue; stopping it removes it from the queue.
    hog = SlurmLauncher(SlurmOptions(time="00:05:00", gpus_per_node=cluster.n_gpus), state_poll_s=0.5)
    first = hog.start(Command(("sleep", "60")), tmp_path / "hog1")
    second = hog.start(Command(("sleep", "60")), tmp_path / "hog2")
    deadline = time.monotonic() + 60
    while hog.poll(first).status is not Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.5)
    # Slurm gives a pending job its reason at its next scheduling pass.
    waiting = hog.poll(second)
    while waiting.raw == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.5)
        waiting = hog.poll(second)
    assert waiting.status is Status.PENDING and waiting.raw in _WAITING_FOR_GPUS, waiting
    hog.stop(second)
    hog.stop(first)
    assert hog.poll(first).status is Status.CANCELLED
    assert job_state(second, stopped=True).status is Status.CANCELLED


def test_a_job_slurm_has_forgotten_ends_as_its_exit_file_says(tmp_path: Path, forgetful: Cluster) -> None:
    """Slurm forgets a finished job MinJobAge after it ends (2 s here, 300 s by default), and a driver may poll
    later than that (suspended, overloaded). Five jobs end while the launcher is not looking, and are looked at only
    once `scontrol` no longer knows them: each ends as its batch script's exit file says. One succeeded, one failed
    (3), one was cancelled from outside (INTERRUPTED: resubmitted, as Slurm's CANCELLED would be; not FAILED), and
    two were killed (SIGKILL to the batch shell and the trainer: no exit file): once the grace for a late exit file
    is over, one is INTERRUPTED and the other, stopped by ablate, CANCELLED; neither is followed forever."""
    launcher = SlurmLauncher(SlurmOptions(time="00:05:00"), state_poll_s=0.5, lost_grace_s=3)
    python = sys.executable
    commands = {
        "succeeded": (python, "-c", "pass"),
        "failed": (python, "-c", "import sys; sys.exit(3)"),
        "cancelled": ("sleep", "300"),
        "killed": ("sleep", "300"),
        "stopped": ("sleep", "300"),
    }
    jobs = {name: launcher.start(Command(argv), tmp_path / name) for name, argv in commands.items()}
    deadline = time.monotonic() + 120
    while any(_job(jobs[name])["JobState"] != "RUNNING" for name in ("cancelled", "killed", "stopped")):
        assert time.monotonic() < deadline, {name: _job(job)["JobState"] for name, job in jobs.items()}
        time.sleep(0.5)
    subprocess.run(["scancel", jobs["cancelled"]], check=True)
    for name in ("killed", "stopped"):
        # The batch shell first, so that it writes no exit file, then the trainer it started.
        shell, trainer = _job_processes(jobs[name])
        shell.kill()
        trainer.kill()
    while any(_known(job) for job in jobs.values()):
        assert time.monotonic() < deadline + 60, "Slurm did not forget the jobs within 3 min"
        time.sleep(1)
    assert not (tmp_path / "killed" / "attempt-0.exit").exists()
    states = {name: launcher.wait(jobs[name], timeout_s=60) for name in ("succeeded", "failed", "cancelled")}
    assert (states["succeeded"].status, states["succeeded"].exit_code) == (Status.SUCCEEDED, 0)
    assert (states["failed"].status, states["failed"].exit_code) == (Status.FAILED, 3)
    assert (states["cancelled"].status, states["cancelled"].exit_code) == (Status.INTERRUPTED, 143), states["cancelled"]
    assert "SIGTERM" in states["cancelled"].raw
    started = time.monotonic()
    killed = launcher.wait(jobs["killed"], timeout_s=60)
    assert killed.status is Status.INTERRUPTED and "without writing its exit file" in killed.raw, killed
    assert time.monotonic() - started >= 2.5  # the grace for a late exit file was given
    launcher.stop(jobs["stopped"], grace_s=10)
    assert launcher.poll(jobs["stopped"]).status is Status.CANCELLED


def test_a_multi_node_trial_script_starts_ray_over_the_allocation(tmp_path: Path) -> None:
    launcher = SlurmLauncher(SlurmOptions(time="01:00:00", nodes=2, gpus_per_node=8, partition="gpu", account="rl"))
    script = launcher.render(Command(("python", "-m", "verl.trainer.main_ppo", "trainer.nnodes=2")), tmp_path)
    text = script.read_text()
    for directive in ("--nodes=2", "--gpus-per-node=8", "--partition=gpu", "--account=rl", "--time=01:00:00"):
        assert f"#SBATCH {directive}\n" in text
    # Ray's processes run on the interpreter that runs ablate (a job's PATH need not lead to a Python with Ray).
    assert f"export ABLATE_PYTHON={sys.executable}\nsource {ROOT / 'slurm' / 'ray_cluster.sh'}\nstart_ray_cluster" in text
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    single = SlurmLauncher(SlurmOptions()).render(Command(("true",)), tmp_path / "one").read_text()
    assert "start_ray_cluster" not in single and "--gpus-per-node" not in single


def test_a_multi_node_trial_job_runs_its_trainer_on_a_ray_cluster_over_its_nodes(tmp_path: Path, cluster: Cluster) -> None:
    """A 2-node trial job (partition `multi`: two slurmd's on this host): the script starts a Ray head on the first
    node and a worker on the second, each a job step under its node's slurmd, and the trainer on the head joins
    that cluster, as verl does with `trainer.nnodes=2`. The probe below stands in for verl: it runs a task on each
    Ray node and reports which Slurm node ran it."""
    if not cluster.multi_nodes:
        pytest.skip(f"the multi-node partition did not start: {cluster.multi_unavailable}")
    launcher = SlurmLauncher(SlurmOptions(time="00:10:00", nodes=2, gpus_per_node=1, partition="multi"), state_poll_s=0.5)
    handle = launcher.start(Command((sys.executable, "-c", _RAY_PROBE)), tmp_path / "trial")
    state = launcher.wait(handle, timeout_s=300)
    stdout = launcher.log_paths(handle)[0].read_text()
    assert state.status is Status.SUCCEEDED, (state, stdout[-2000:], launcher.stderr_tail(handle))
    job = _job(launcher.describe(handle)["job_id"])
    assert (job["JobState"], job["NumNodes"], job["NodeList"]) == ("COMPLETED", "2", "ablate-n[1-2]")
    assert "all 2 node(s) joined the Ray cluster" in stdout
    (probe,) = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    # The trainer ran on the head; the Ray cluster had both nodes, each with the GPU Slurm gave it.
    assert probe == {"trainer_on": "ablate-n1", "ray_nodes": ["ablate-n1", "ablate-n2"], "gpus": 2.0}
    # The job's Ray is gone, and left the nodes as it found them: no `ray.init()` here tries to join its dead head.
    _assert_ray_left_nothing(stdout)


def test_a_two_node_verl_trial_joins_the_ray_cluster_its_job_started(tmp_path: Path, env: dict[str, str], cluster: Cluster) -> None:
    """verl itself (the installed 0.9.1) as a 2-node trial: started without `ray_init.address=local`, with
    `trainer.nnodes=2`, its own `ray.init()` joins the Ray cluster the job started over both nodes instead of starting
    one of its own. verl cannot train on this machine (no GPU, no vLLM), so the trial then fails; what is checked is
    where verl's Ray went."""
    if not cluster.multi_nodes:
        pytest.skip(f"the multi-node partition did not start: {cluster.multi_unavailable}")
    spec = tmp_path / "verl-2n.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            name: slurm-verl-2n
            trainer: {{backend: verl, base: {ROOT / "configs" / "verl" / "qwen3_4b_grpo.yaml"}}}
            factors:
              entropy_coeff: [0]
            budget: {{max_steps: 10, eval_every: 5, save_every: 5}}
            objective: {{metric: auto, mode: max}}
            pruning: {{collapse: null}}
            resources: {{gpus: 1, cpus: 1, nodes: 2}}
            execution: {{max_failures: 0}}
            cluster: {{slurm: {{partition: multi, time: "00:10:00"}}}}
            """
        )
    )
    out = tmp_path / "out"
    result = run_ablate(["run", str(spec), "--out", str(out)], env)
    # Its trial failed (no GPU here), so the sweep did not succeed: exit 1, the failed trial named on stderr.
    assert result.returncode == 1, result.stderr[-3000:]
    store, trials = _store_trials(out)
    (trial,) = trials.values()
    assert trial.status == "failed"
    assert f"error: trial {trial.name} ({trial.id}) failed" in result.stderr, result.stderr[-3000:]
    (started,) = store.list_events(trial.id, kind="started")
    argv = started.data["argv"]
    assert argv[1:3] == ["-m", "verl.trainer.main_ppo"]
    assert "trainer.nnodes=2" in argv and "trainer.n_gpus_per_node=1" in argv
    assert not any("ray_init.address" in word for word in argv)
    assert _job(started.data["job_id"])["NodeList"] == "ablate-n[1-2]"
    workdir = out / "trials" / trial.name
    stdout, stderr = (workdir / "attempt-0.stdout.log").read_text(), (workdir / "attempt-0.stderr.log").read_text()
    port = _ray_port(stdout)
    assert "all 2 node(s) joined the Ray cluster" in stdout
    assert re.search(rf"Connecting to existing Ray cluster at address: \S+:{port}\b", stderr), stderr[-3000:]
    assert "Started a local Ray instance" not in stderr
    _assert_ray_left_nothing(stdout)


def test_driver_sbatch_runs_the_demo_sweep_inside_one_allocation(tmp_path: Path, env: dict[str, str], cluster: Cluster) -> None:
    """The demo sweep inside one 2-node allocation: Ray over both nodes (1 CPU each, so two trials at once run on
    different nodes), `ablate run` on the first, trials placed on both. A reduced copy of the demo spec: its
    factors, design, seeds and rules (18 trials), with 40 steps, the short warm start, and an LR at which the
    baseline collapses within them (where the allocation runs the sweep is the subject, not the demo's results)."""
    if not cluster.multi_nodes:
        pytest.skip(f"the multi-node partition did not start: {cluster.multi_unavailable}")
    demo = yaml.safe_load((ROOT / "sweeps" / "demo.yaml").read_text())
    demo["trainer"] = {"backend": "mini", "base": str(ROOT / "configs" / "mini" / "original.yaml"), "overrides": {"mini.warm_start.steps": 600}}
    demo["factors"]["lr_schedule"][0]["lr"] = COLLAPSING_LR
    demo["budget"] = {"max_steps": 40, "eval_every": 5, "save_every": 5}
    spec = tmp_path / "demo.yaml"
    spec.write_text(yaml.safe_dump(demo, sort_keys=False))
    out = tmp_path / "demo"
    job_env = {**env, "ABLATE_RAY_CPUS": "1"}
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--partition=multi", "--nodes=2", "--time=00:30:00", f"--output={tmp_path / 'driver.out'}",
         str(ROOT / "slurm" / "driver.sbatch"), str(spec), str(out)],
        capture_output=True, text=True, env=job_env, cwd=ROOT, check=True,
    )  # fmt: skip
    job_id = submitted.stdout.strip()
    deadline = time.monotonic() + 900
    while job_state(job_id).status not in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.INTERRUPTED):
        assert time.monotonic() < deadline, "the driver job did not end in 15 min"
        time.sleep(3)
    log = (tmp_path / "driver.out").read_text()
    assert _job(job_id)["JobState"] == "COMPLETED", log[-3000:]
    assert "all 2 node(s) joined the Ray cluster" in log
    store, trials = _store_trials(out)
    assert len(trials) == 18
    assert all(t.status in ("completed", "stopped") for t in trials.values())
    assert any(t.stop_reason.startswith("collapse:") for t in trials.values())
    assert all("best" in store.get_checkpoints(t.id) for t in trials.values())
    nodes = {e.data["node"] for t in trials.values() for e in store.list_events(t.id, kind="started")}
    assert nodes == {"ablate-n1", "ablate-n2"}
    # The job's Ray cluster stopped with it, and left nothing behind.
    _assert_ray_left_nothing(log)


# Stands in for a multi-node trainer: joins the job's Ray cluster and runs a task on each of its nodes.
_RAY_PROBE = """
import json, os, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(logging_level="ERROR")
nodes = [n for n in ray.nodes() if n["Alive"]]

@ray.remote(num_cpus=0)
def slurm_node():
    return os.environ.get("SLURMD_NODENAME")

on = [slurm_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote() for n in nodes]
gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
print(json.dumps({"trainer_on": os.environ.get("SLURMD_NODENAME"), "ray_nodes": sorted(ray.get(on)), "gpus": gpus}))
"""


def _ray_port(log: str) -> str:
    """Return the port of the Ray head a job's log announces."""
    (port,) = re.findall(r"ablate: Ray head on \S+ \([^:]+:(\d+)\)", log)
    return port


def _ray_processes(port: str) -> list[int]:
    """Return the processes of the Ray cluster on `port` still alive."""
    return [p.pid for p in psutil.process_iter(["cmdline"]) if re.search(rf"[:=]{port}\b", " ".join(p.info.get("cmdline") or []))]


def _assert_ray_left_nothing(log: str) -> None:
    """Check that the Ray cluster a job's log announces is gone and left nothing on the node: no process, its own
    temp folder (not /tmp/ray) removed, no Ray address file pointing at its head."""
    port = _ray_port(log)
    assert _ray_processes(port) == []
    addresses = _ray_addresses()
    assert not any(address and address.endswith(f":{port}") for address in addresses.values()), addresses
    (folder,) = re.findall(r"ablate: Ray temp dir (\S+) on each node", log)
    assert not Path(folder).exists() and not Path(folder).is_relative_to("/tmp/ray"), folder


def _ray_addresses() -> dict[Path, str | None]:
    """Return the Ray address files where a plain `ray.init()` here looks for a cluster to join, with their
    contents (None: no file): /tmp/ray's, and the one Ray's temp-dir rule gives in this environment."""
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    files = {Path("/tmp/ray/ray_current_cluster"), Path(base) / "ray" / "ray_current_cluster"}
    return {path: path.read_text().strip() if path.exists() else None for path in sorted(files)}


def _listening(address: str) -> bool:
    """Return True if something accepts connections at `host:port`."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


def _job_gpu_indices(job_id: str) -> list[int] | None:
    """Return the indices of the GPUs Slurm allocated to a running job (`scontrol show job -d`: IDX:0-1,3)."""
    text = subprocess.run(["scontrol", "show", "job", "-d", job_id], capture_output=True, text=True, check=False).stdout
    found = re.search(r"GRES=gpu(?::\w+)?:\d+\(IDX:([\d,-]+)\)", text)
    if found is None:
        return None
    indices = []
    for part in found.group(1).split(","):
        low, _, high = part.partition("-")
        indices.extend(range(int(low), int(high or low) + 1))
    return indices


def _job_processes(job_id: str) -> tuple[psutil.Process, psutil.Process]:
    """Return a running single-trainer job's batch shell and the trainer it started."""
    procs = [p for p in psutil.process_iter(["cmdline"]) if _environ(p).get("SLURM_JOB_ID") == job_id]
    (shell,) = [p for p in procs if (p.info["cmdline"] or [""])[-1].endswith("/slurm_script")]
    (trainer,) = [p for p in procs if p.pid != shell.pid and p.ppid() == shell.pid]
    return shell, trainer


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}


def _known(job_id: str) -> bool:
    """Return True while slurmctld still knows the job (`scontrol show job` does not say "Invalid job id")."""
    done = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False)
    return "Invalid job id" not in done.stderr


def _time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _wait_for(out: Path, ready: object, timeout: float = 300) -> str:
    """Wait until the sweep's only trial satisfies `ready(store, record)`; return its id."""
    store, trial = wait_for_trial(out, ready, timeout, "got ready")  # type: ignore[arg-type]
    store.close()
    return trial.id
