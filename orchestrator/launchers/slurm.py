"""`SlurmLauncher`: run each trial attempt as one sbatch job, rendered from `slurm/trial.sbatch`.

The launcher writes the attempt's batch script into the trial's directory (`attempt-N.sbatch`: kept, so an attempt
can be rerun by hand), submits it with `sbatch --parsable`, follows the job with `scontrol show job` (squeue's
source; no accounting needed), and stops it with `scancel`. The job's output goes to `attempt-N.stdout.log` and
`attempt-N.stderr.log` in the trial's directory, on the filesystem the cluster shares, where the engine also tails
the trainer's metrics file. The batch script writes the trainer's exit code to `attempt-N.exit` as it ends (and
the signal, if Slurm signalled the job: `143 TERM`): the job's end is noticed without waiting for the next state
query, and known after Slurm has forgotten the job.

Slurm forgets a finished job `MinJobAge` after it ends (300 s by default; there is no accounting to ask instead),
so a driver that polls late (suspended, overloaded) finds no job at all. Its outcome then comes from the exit file:
0 succeeded, a signal is a cancellation (by ablate: CANCELLED; else INTERRUPTED, as Slurm's CANCELLED, TIMEOUT or
PREEMPTED would be), any other code failed. A job that left no exit file was killed before its script could write
one (SIGKILL, an OOM kill of the batch shell, a failed node): INTERRUPTED, once the file has still not appeared
`lost_grace_s` later (a shared filesystem may show it late).

Nothing from a spec reaches a script unchecked: the spec validates partitions, accounts, qos, constraints, times
and extra options (`--key=value`, a safe character set, no directive ablate sets itself), the launcher refuses a
trial directory with characters a directive cannot carry, and every argv word is shell-quoted.

Slurm's job states map to `Status` as the engine needs them:

| Slurm | Status | engine |
|---|---|---|
| PENDING, CONFIGURING, REQUEUED, RESIZING, SUSPENDED | PENDING | queued, with Slurm's reason |
| RUNNING, COMPLETING, STOPPED, SIGNALING, STAGE_OUT | RUNNING | followed |
| COMPLETED | SUCCEEDED | completed |
| FAILED, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE | FAILED | retried, counted against max_failures |
| TIMEOUT, PREEMPTED, NODE_FAIL, CANCELLED by someone else | INTERRUPTED | resubmitted (resumes), counted |
| CANCELLED by ablate | CANCELLED | stopped on purpose |
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import AblateError, LaunchError
from orchestrator.launchers._base import JobState, Status
from orchestrator.trainers import Command

__all__ = ["SlurmLauncher", "SlurmOptions", "cancel", "cancel_alive", "render_sbatch", "slurm_templates_dir"]

_LOG = logging.getLogger(__name__)
# What a `#SBATCH --chdir=`/`--output=` directive can carry unquoted (sbatch reads directives without a shell).
_SAFE_PATH_RE = re.compile(r"^[A-Za-z0-9._/+@%=,:-]+$")
_JOB_NAME_RE = re.compile(r"[^A-Za-z0-9._-]")
# Variables of the submitting process that must not leak into a job: Ray's worker settings and the GPUs Ray gave
# the (GPU-less) proxy; Slurm sets the job's own GPUs.
_DROP_PREFIXES = ("RAY_", "SLURM_")
_DROP_KEYS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "OMP_NUM_THREADS")
_KEEP_KEYS = ("SLURM_CONF",)
_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED"}
_RUNNING = {"RUNNING", "COMPLETING", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
_FAILED = {"FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
_INTERRUPTED = {"TIMEOUT", "PREEMPTED", "NODE_FAIL", "REVOKED"}


def slurm_templates_dir() -> Path:
    """Return the folder of the sbatch templates: `$ABLATE_SLURM_DIR`, else the project's `slurm/`.

    Raises:
        AblateError: If the folder has no `trial.sbatch`.
    """
    configured = os.environ.get("ABLATE_SLURM_DIR")
    folder = Path(configured) if configured else Path(__file__).resolve().parents[2] / "slurm"
    if not (folder / "trial.sbatch").is_file():
        raise AblateError(
            f"no sbatch template at {folder / 'trial.sbatch'}; set ABLATE_SLURM_DIR to the folder holding "
            "trial.sbatch and ray_cluster.sh (the project's slurm/)"
        )
    return folder.absolute()


@dataclass(frozen=True)
class SlurmOptions:
    """What every trial job of a sweep asks Slurm for (from the spec's `cluster.slurm` and `resources`)."""

    time: str = "24:00:00"
    nodes: int = 1
    gpus_per_node: int = 0
    cpus: float = 1.0
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra_sbatch: tuple[str, ...] = ()
    job_prefix: str = "ablate"

    @classmethod
    def from_spec(cls, spec: Any) -> SlurmOptions:
        """Return the options of a spec whose `cluster` is a Slurm cluster."""
        slurm = spec.cluster.slurm
        return cls(
            time=slurm.time,
            nodes=spec.resources.nodes,
            gpus_per_node=spec.resources.gpus,
            cpus=spec.resources.cpus,
            partition=slurm.partition,
            account=slurm.account,
            qos=slurm.qos,
            constraint=slurm.constraint,
            extra_sbatch=tuple(slurm.extra_sbatch),
            job_prefix=f"ablate-{spec.name}"[:48],
        )

    def directives(self) -> list[str]:
        """Return the optional `--key=value` options: partition, account, qos, constraint, then the extra ones."""
        named = {"partition": self.partition, "account": self.account, "qos": self.qos, "constraint": self.constraint}
        return [f"--{key}={value}" for key, value in named.items() if value] + list(self.extra_sbatch)


@dataclass
class _Job:
    job_id: str
    workdir: Path
    attempt: int
    stdout_path: Path
    stderr_path: Path
    exit_path: Path
    stopped: bool = False
    state: JobState = field(default_factory=lambda: JobState(Status.PENDING, "submitted"))
    queried: float = 0.0
    final: bool = False
    lost_since: float | None = None


class SlurmLauncher:
    """Runs trainer commands as sbatch jobs, one job per attempt.

    Args:
        options: What each job asks for.
        templates: The folder with `trial.sbatch` and `ray_cluster.sh` (default: `slurm_templates_dir()`).
        state_poll_s: The least time between two `scontrol` queries of one job (a queue is not to be hammered);
            the end of a job is seen sooner, through its exit file.
        grace_s: How long `stop` waits for a cancelled job to leave the queue before giving up on it.
        lost_grace_s: How long a job Slurm has forgotten may go without an exit file appearing before it counts as
            killed (INTERRUPTED).
    """

    def __init__(
        self,
        options: SlurmOptions,
        *,
        templates: Path | None = None,
        state_poll_s: float = 5.0,
        grace_s: float = 60.0,
        lost_grace_s: float = 30.0,
    ) -> None:
        self._options = options
        self._templates = templates or slurm_templates_dir()
        self._state_poll_s = state_poll_s
        self._grace_s = grace_s
        self._lost_grace_s = lost_grace_s
        self._jobs: dict[str, _Job] = {}

    detached = True
    """A Slurm job runs on whether or not the process that submitted it lives."""

    # ---- the launcher protocol ---------------------------------------------------------------------------------

    def start(
        self,
        command: Command,
        workdir: Path,
        *,
        attempt: int = 0,
        env: Mapping[str, str] | None = None,
        gpus: Sequence[int | str] | None = None,
    ) -> str:
        """Write the attempt's batch script into `workdir`, submit it, and return the job id.

        `gpus` is ignored: Slurm allocates the job's GPUs (`--gpus-per-node`) and sets CUDA_VISIBLE_DEVICES.

        Raises:
            LaunchError: If sbatch is missing or refuses the job; the message has sbatch's own words.
        """
        workdir = Path(workdir).absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        script = self.render(command, workdir, attempt=attempt)
        job = _Job(
            job_id="",
            workdir=workdir,
            attempt=attempt,
            stdout_path=workdir / f"attempt-{attempt}.stdout.log",
            stderr_path=workdir / f"attempt-{attempt}.stderr.log",
            exit_path=workdir / f"attempt-{attempt}.exit",
        )
        job.exit_path.unlink(missing_ok=True)
        full_env = {**submit_environment(), **command.env, **(env or {})}
        done = _run(["sbatch", "--parsable", str(script)], env=full_env, cwd=workdir)
        if done.returncode != 0:
            raise LaunchError(f"sbatch refused {script}: {done.stderr.strip() or done.stdout.strip()}")
        job.job_id = done.stdout.strip().split(";")[0]
        if not job.job_id.isdigit():
            raise LaunchError(f"sbatch gave no job id for {script} (output: {done.stdout.strip()!r})")
        self._jobs[job.job_id] = job
        return job.job_id

    def poll(self, handle: str) -> JobState:
        """Return the job's state; queries Slurm at most every `state_poll_s`, every second once the job is ending."""
        job = self._jobs.get(handle)
        if job is None:
            return job_state(handle)
        if job.final:
            return job.state
        now = time.monotonic()
        # Once the script has written its exit file the job is ending (or Slurm has forgotten it and the file is
        # awaited): ask every second, not every `state_poll_s`.
        ending = job.exit_path.exists() or job.lost_since is not None
        every = min(1.0, self._state_poll_s) if ending else self._state_poll_s
        if now - job.queried >= every:
            job.queried = now
            state = job_state(handle, exit_path=job.exit_path, stopped=job.stopped)
            if state.raw == _LOST and not job.stopped:
                job.lost_since = now if job.lost_since is None else job.lost_since
                if now - job.lost_since < self._lost_grace_s:
                    return job.state  # the last state seen, until the exit file appears or the grace is over
            job.state = state
            job.final = job.state.status.done
        return job.state

    def wait(self, handle: str, timeout_s: float | None = None) -> JobState:
        """Poll until the job ends or `timeout_s` passes; return its last state."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        state = self.poll(handle)
        while not state.status.done and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
            state = self.poll(handle)
        return state

    def stop(self, handle: str, grace_s: float | None = None) -> None:
        """Cancel the job (Slurm signals its steps with SIGTERM, then SIGKILL after KillWait); wait until it ends."""
        job = self._jobs.get(handle)
        if job is not None:
            if job.final:
                return
            job.stopped = True
        cancel([handle])
        deadline = time.monotonic() + (self._grace_s if grace_s is None else grace_s)
        while time.monotonic() < deadline:
            state = job_state(handle, exit_path=None if job is None else job.exit_path, stopped=True)
            if state.status.done or state.status is Status.UNKNOWN:
                if job is not None:
                    job.state, job.final = state, True
                return
            time.sleep(0.5)
        _LOG.warning("Slurm job %s was cancelled but has not ended after %.0f s", handle, self._grace_s)

    def stderr_tail(self, handle: str, n_lines: int = 40) -> str:
        """Return the last `n_lines` lines of the job's stderr log."""
        job = self._jobs.get(handle)
        if job is None or not job.stderr_path.exists():
            return ""
        lines = job.stderr_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n_lines:])

    def log_paths(self, handle: str) -> tuple[Path, Path]:
        """Return the job's stdout and stderr log paths."""
        job = self._jobs[handle]
        return job.stdout_path, job.stderr_path

    def describe(self, handle: str) -> dict[str, Any]:
        """Return what the engine records about a started job: its Slurm job id and batch script."""
        job = self._jobs[handle]
        return {"job_id": job.job_id, "script": str(job.workdir / f"attempt-{job.attempt}.sbatch")}

    def release(self, started: Sequence[Mapping[str, Any]], workdir: Path) -> None:
        """Cancel every earlier start's job that is still queued or running (a job outlives its submitter)."""
        cancel_alive([str(data["job_id"]) for data in started if data.get("job_id")])

    # ---- the batch script ------------------------------------------------------------------------------------

    def render(self, command: Command, workdir: Path, *, attempt: int = 0) -> Path:
        """Write the batch script of one attempt to `workdir/attempt-N.sbatch` and return its path.

        Raises:
            LaunchError: If `workdir` has characters a `#SBATCH` directive cannot carry.
        """
        workdir = Path(workdir).absolute()
        check_slurm_path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        script = workdir / f"attempt-{attempt}.sbatch"
        text = render_sbatch(self._options, command, workdir, attempt=attempt, templates=self._templates)
        script.write_text(text)
        return script


def render_sbatch(
    options: SlurmOptions, command: Command, workdir: Path, *, attempt: int = 0, templates: Path | None = None, python: str | None = None
) -> str:
    """Return the batch script of one attempt of a trial: pure (nothing is written, nothing is run).

    Args:
        options: What the job asks for.
        command: The trainer's command; its argv reaches the trainer word for word.
        workdir: The trial's directory (absolute): the job's logs, exit file and script go there.
        attempt: The attempt number, in the files' names.
        templates: The folder with `trial.sbatch` and `ray_cluster.sh` (default: `slurm_templates_dir()`).
        python: The interpreter the job's helpers run with (default: this one).
    """
    import jinja2

    templates = templates or slurm_templates_dir()
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return environment.get_template("trial.sbatch").render(
        script=shlex.quote(str(workdir / f"attempt-{attempt}.sbatch")),
        job_name=_JOB_NAME_RE.sub("_", f"{options.job_prefix}-{workdir.name}")[:128],
        workdir=workdir,
        stdout=workdir / f"attempt-{attempt}.stdout.log",
        stderr=workdir / f"attempt-{attempt}.stderr.log",
        exit_file=shlex.quote(str(workdir / f"attempt-{attempt}.exit")),
        nodes=options.nodes,
        cpus=max(1, math.ceil(options.cpus)),
        time=options.time,
        gpus_per_node=options.gpus_per_node,
        directives=options.directives(),
        multi_node=options.nodes > 1,
        ray_cluster_sh=shlex.quote(str(templates / "ray_cluster.sh")),
        python=shlex.quote(python or sys.executable),
        attempt=attempt,
        argv=" ".join(shlex.quote(word) for word in command.argv),
    )


# ------------------------------------------------------------------------------------------------ job states


def job_state(job_id: str, *, exit_path: Path | None = None, stopped: bool = False) -> JobState:
    """Return a job's state from `scontrol show job`, or from its exit file once Slurm has forgotten the job.

    `stopped`: ablate cancelled the job (a cancellation is then CANCELLED, not INTERRUPTED). A job Slurm has
    forgotten without an exit file is CANCELLED if stopped, else INTERRUPTED with the raw text `_LOST` (the
    launcher waits `lost_grace_s` for the file first); without `exit_path` it is UNKNOWN.

    Never raises: a failing query gives UNKNOWN with the reason.
    """
    done = _run(["scontrol", "show", "job", "--oneliner", job_id])
    if done.returncode == 0 and "JobState=" in done.stdout:
        fields = dict(re.findall(r"(\w+)=(\S*)", done.stdout))
        return _map_state(fields.get("JobState", ""), fields.get("Reason", ""), fields.get("ExitCode", ""), stopped)
    from_file = None if exit_path is None else exit_file_state(exit_path, stopped=stopped)
    if from_file is not None:
        return from_file
    reason = (done.stderr or done.stdout).strip() or f"scontrol exited with {done.returncode}"
    if exit_path is not None and "Invalid job id" in reason:
        if stopped:
            return JobState(Status.CANCELLED, "CANCELLED by ablate (Slurm has forgotten the job)")
        return JobState(Status.INTERRUPTED, _LOST)
    _LOG.warning("cannot read the state of Slurm job %s: %s", job_id, reason)
    return JobState(Status.UNKNOWN, f"state unknown: {reason}")


# The raw state of a job that Slurm has forgotten and that left no exit file.
_LOST = "ended without writing its exit file (killed, or its node failed), and Slurm has forgotten the job"


def exit_file_state(path: Path, *, stopped: bool = False) -> JobState | None:
    """Return how a job ended from the exit file its batch script wrote, or None if there is none (yet).

    The file holds the trainer's exit code, then the signal if Slurm signalled the batch script (`143 TERM`:
    scancel, the time limit, a preemption). A signalled job was cancelled: CANCELLED if ablate stopped it, else
    INTERRUPTED, as Slurm's own CANCELLED, TIMEOUT and PREEMPTED are.
    """
    try:
        words = path.read_text().split()
    except OSError:
        return None
    if not words:
        return None
    code = _int(words[0])
    note = "Slurm has forgotten the job; from its exit file"
    if len(words) > 1:
        if stopped:
            return JobState(Status.CANCELLED, f"CANCELLED by ablate ({note})", code)
        return JobState(Status.INTERRUPTED, f"ended by SIG{words[1]}: cancelled outside ablate, time limit or preemption ({note})", code)
    if code == 0:
        return JobState(Status.SUCCEEDED, f"COMPLETED ({note})", 0)
    return JobState(Status.FAILED, f"FAILED with exit code {code} ({note})", code)


def _map_state(slurm_state: str, reason: str, exit_code: str, stopped: bool) -> JobState:
    code = _exit_code(exit_code)
    state = slurm_state.split("+")[0]
    if state in _PENDING:
        return JobState(Status.PENDING, f"{state} ({reason})" if reason and reason != "None" else state)
    if state in _RUNNING:
        return JobState(Status.RUNNING, state)
    if state == "COMPLETED":
        return JobState(Status.SUCCEEDED, "COMPLETED", code)
    if state in _FAILED:
        return JobState(Status.FAILED, f"{state} with exit code {code}", code)
    if state == "CANCELLED":
        if stopped:
            return JobState(Status.CANCELLED, "CANCELLED by ablate", code)
        return JobState(Status.INTERRUPTED, "CANCELLED outside ablate", code)
    if state in _INTERRUPTED:
        return JobState(Status.INTERRUPTED, state, code)
    return JobState(Status.UNKNOWN, f"unknown Slurm state {slurm_state!r}")


def _exit_code(text: str) -> int | None:
    # `ExitCode=3:0` is the exit status and the signal that ended the batch script (`0:15`: SIGTERM).
    if ":" not in text:
        return _int(text)
    status, sig = text.split(":", 1)
    number = _int(sig)
    return -number if number else _int(status)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------- helpers


def cancel(job_ids: Sequence[str]) -> None:
    """scancel the jobs (no error for jobs that have ended)."""
    if job_ids:
        _run(["scancel", *job_ids])


def cancel_alive(job_ids: Sequence[str]) -> None:
    """scancel those of `job_ids` that Slurm still queues or runs (earlier attempts' jobs, a stopped trial's)."""
    cancel([j for j in job_ids if job_state(j).status in (Status.PENDING, Status.RUNNING)])


def check_slurm_path(path: Path) -> None:
    """Refuse a path that a `#SBATCH` directive cannot carry (spaces, quotes, `$`, newlines...).

    Raises:
        LaunchError: Naming the path and the characters allowed.
    """
    if not _SAFE_PATH_RE.match(str(path)):
        raise LaunchError(
            f"{path}: a Slurm trial directory may hold only A-Z a-z 0-9 and . _ / + @ % = , : - "
            "(sbatch reads its directives without a shell); choose another --out"
        )


def submit_environment() -> dict[str, str]:
    """Return this process's environment without what must not reach a job (Ray's, the proxy's GPUs, Slurm's)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k in _KEEP_KEYS or not (k.startswith(_DROP_PREFIXES) or k in _DROP_KEYS)
    }


def check_sbatch(options: SlurmOptions, templates: Path | None = None) -> None:
    """Check, submitting nothing, that Slurm is here and would accept a trial job (`sbatch --test-only`).

    Raises:
        AblateError: If sbatch is missing, or Slurm refuses the job (unknown partition, account, too many GPUs);
            the message has Slurm's own words.
    """
    if shutil.which("sbatch") is None:
        raise AblateError("`cluster: slurm` needs Slurm's sbatch on PATH; run ablate on a Slurm login node")
    import tempfile

    launcher = SlurmLauncher(options, templates=templates)
    with tempfile.TemporaryDirectory(prefix="ablate-sbatch-test-") as folder:
        script = launcher.render(Command(("true",)), Path(folder))
        done = _run(["sbatch", "--test-only", str(script)], env=submit_environment(), cwd=Path(folder))
    if done.returncode != 0:
        message = " ".join((done.stderr.strip() or done.stdout.strip()).split())
        raise AblateError(f"Slurm would refuse the trial jobs: {message}")


def _run(argv: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=None if env is None else dict(env), cwd=cwd, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))
