"""`LocalLauncher`: run a trainer as a subprocess on this machine, in its own process group.

Each job is one process group. The launcher starts the guard (`orchestrator/launchers/_guard.py`, standard library
only) as the leader of a new session, and the guard starts the trainer's argv (never a shell) inside that group,
with the trial's workdir as its working directory and its output appended to `attempt-N.stdout.log` and
`attempt-N.stderr.log` there. `stop` signals the whole group, so processes the trainer started go with it.

No trainer process outlives the process that launched it:

- `stop_all()` stops every job of the launcher (SIGTERM to each group, one grace period for all, then SIGKILL);
  it runs at interpreter exit (`atexit`), and the engine calls it from its own SIGINT/SIGTERM handling. It takes
  no lock, so it is safe to call from a signal handler.
- A SIGKILL of the launching process runs no cleanup, and a child in its own session survives it. The guard sees
  its parent change within 0.1 s and stops the group as `stop` does (SIGTERM, the grace period, SIGKILL).

The guard watches its parent rather than relying on `prctl(PR_SET_PDEATHSIG)`: that signal fires when the *thread*
that forked the child exits, not the process (Ray runs function trainables in threads), reaches only the direct
child and not the processes the trainer starts, delivers one signal without escalating to SIGKILL, and needs a
`preexec_fn`, which is unsafe in a process with threads.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import LaunchError
from orchestrator.launchers._base import JobState, Status
from orchestrator.launchers._guard import group_members
from orchestrator.trainers import Command

__all__ = ["LocalLauncher", "is_guard_of", "node_name"]

_LOG = logging.getLogger(__name__)
_GUARD = Path(__file__).with_name("_guard.py")
_POLL_S = 0.05
_KILL_WAIT_S = 5.0
_POLITE_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def node_name() -> str:
    """Return the name of the machine jobs start on: Slurm's node name inside an allocation (where several nodes of
    a test cluster may share one host), the host name otherwise."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


@dataclass
class _Job:
    handle: str
    proc: subprocess.Popen[bytes]
    program: str
    workdir: Path
    stdout_path: Path
    stderr_path: Path
    stderr_offset: int
    stopped: bool = False
    ended: bool = False


class LocalLauncher:
    """Runs trainer commands as local subprocesses, one process group per job.

    Args:
        grace_s: Default seconds between SIGTERM and SIGKILL, for `stop`, `stop_all` and the guard.

    Example:
        >>> import sys, tempfile
        >>> from orchestrator.trainers import Command
        >>> launcher = LocalLauncher()
        >>> handle = launcher.start(Command((sys.executable, "-c", "print('hi')")), Path(tempfile.mkdtemp()))
        >>> launcher.wait(handle).status
        <Status.SUCCEEDED: 'SUCCEEDED'>
    """

    detached = False
    """A local job ends with its guard when the process that started it dies."""

    def __init__(self, *, grace_s: float = 10.0) -> None:
        if grace_s < 0:
            raise ValueError(f"`grace_s` must be >= 0 (got {grace_s})")
        self._grace_s = grace_s
        self._jobs: dict[str, _Job] = {}
        self._n_started = 0
        _LAUNCHERS.add(self)

    def start(
        self,
        command: Command,
        workdir: Path,
        *,
        attempt: int = 0,
        env: Mapping[str, str] | None = None,
        gpus: Sequence[int | str] | None = None,
    ) -> str:
        """Start `command` in `workdir` and return the job's handle.

        The environment is this process's, then `command.env`, then `env`, then `CUDA_VISIBLE_DEVICES` from
        `gpus` (an empty list hides every GPU). Logs are appended, so a restarted attempt keeps the earlier output;
        `stderr_tail` reads only what this start wrote.

        Args:
            command: The argv and environment from the trainer builder.
            workdir: The job's working directory, created if missing; the logs go there.
            attempt: The attempt number, used in the log names (`attempt-N.stdout.log`, `attempt-N.stderr.log`).
            env: More environment variables.
            gpus: GPU indices for `CUDA_VISIBLE_DEVICES`; None leaves the variable as the environment has it.

        Raises:
            LaunchError: If the program cannot be found or run, or the workdir or logs cannot be created; the
                message names the program, the workdir and the stderr log.
        """
        workdir = Path(workdir).absolute()
        stdout_path = workdir / f"attempt-{attempt}.stdout.log"
        stderr_path = workdir / f"attempt-{attempt}.stderr.log"
        program = command.argv[0] if command.argv else ""
        # An empty argv has nothing to run.
        if not program:
            raise LaunchError(f"cannot start an empty command in {workdir}.")
        full_env = {**os.environ, **command.env, **(env or {})}
        if gpus is not None:
            full_env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpus)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LaunchError(f"cannot start `{program}`: cannot create its workdir {workdir}: {error}") from error
        executable = _resolve_executable(program, workdir, full_env.get("PATH", os.defpath))
        if executable is None:
            reason = f"cannot start `{program}` in {workdir}: no such executable file (PATH={full_env.get('PATH')})"
            _note(stderr_path, reason)
            raise LaunchError(f"{reason}; log: {stderr_path}")
        return self._spawn(command, workdir, executable, full_env, stdout_path, stderr_path)

    def poll(self, handle: str) -> JobState:
        """Return the job's state: RUNNING, SUCCEEDED (exit 0), FAILED (exit > 0 or a crash signal), CANCELLED.

        CANCELLED means stopped by `stop`/`stop_all` (whatever the exit code), or ended by SIGTERM, SIGINT or
        SIGHUP from outside. A crash signal (SIGKILL from the OOM killer, SIGSEGV, SIGABRT, ...) is FAILED, so the
        engine retries it. An unknown handle or an OS error gives UNKNOWN, logged.
        """
        job = self._jobs.get(handle)
        if job is None:
            _LOG.warning("poll of unknown local job %r", handle)
            return JobState(Status.UNKNOWN, f"unknown handle {handle!r}")
        try:
            code = job.proc.poll()
        except OSError as error:
            _LOG.warning("poll of local job %s failed: %s", handle, error)
            return JobState(Status.UNKNOWN, f"poll failed: {error}")
        if code is None:
            return JobState(Status.RUNNING, f"running (pid {job.proc.pid})")
        return _final_state(code, stopped=job.stopped)

    def wait(self, handle: str, timeout_s: float | None = None) -> JobState:
        """Return the job's state once it has ended, or its current state after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        state = self.poll(handle)
        while state.status in (Status.RUNNING, Status.PENDING):
            if deadline is not None and time.monotonic() >= deadline:
                return state
            time.sleep(_POLL_S)
            state = self.poll(handle)
        return state

    def stop(self, handle: str, grace_s: float | None = None) -> None:
        """Stop the job's process group: SIGTERM, up to `grace_s` seconds, then SIGKILL; return once it is gone.

        Idempotent. Also cleans up a job that already ended but left processes in its group. A job that had
        already ended by itself keeps its status; one that was running becomes CANCELLED.

        Args:
            handle: From `start`; an unknown handle is logged and ignored.
            grace_s: Seconds to wait after SIGTERM; default: the launcher's `grace_s`.
        """
        job = self._jobs.get(handle)
        if job is None:
            _LOG.warning("stop of unknown local job %r: nothing to stop", handle)
            return
        self._stop_jobs([job], self._grace_s if grace_s is None else grace_s)

    def stop_all(self, grace_s: float | None = None) -> None:
        """Stop every job this launcher started, all at once (one grace period in total).

        Takes no lock and may be called from a signal handler or at exit. Idempotent.
        """
        self._stop_jobs(list(self._jobs.values()), self._grace_s if grace_s is None else grace_s)

    def stderr_tail(self, handle: str, n_lines: int = 40) -> str:
        """Return the last `n_lines` lines the job wrote to stderr since this start (guard messages included).

        Raises:
            KeyError: If the handle is unknown.
        """
        if n_lines < 1:
            raise ValueError(f"`n_lines` must be >= 1 (got {n_lines})")
        job = self._job(handle)
        return _tail_lines(job.stderr_path, job.stderr_offset, n_lines)

    def pgid(self, handle: str) -> int:
        """Return the job's process group id (the guard's pid; the trainer is the guard's child).

        Raises:
            KeyError: If the handle is unknown.
        """
        return self._job(handle).proc.pid

    def describe(self, handle: str) -> dict[str, Any]:
        """Return what the engine records about a started job: its process group id and the node it runs on."""
        return {"pgid": self.pgid(handle), "node": node_name()}

    def log_paths(self, handle: str) -> tuple[Path, Path]:
        """Return the job's stdout and stderr log files.

        Raises:
            KeyError: If the handle is unknown.
        """
        job = self._job(handle)
        return job.stdout_path, job.stderr_path

    def release(self, started: Sequence[Mapping[str, Any]], workdir: Path) -> None:
        """Kill the process group of each earlier start that a dead worker left behind (the guard does it too).

        A recorded process group id may have been reused since, by anything: a group is killed only while its
        leader is still the guard of a trainer writing into `workdir`, on this node.
        """
        here = node_name()
        for data in started:
            pgid = data.get("pgid")
            if not pgid or data.get("node", here) != here or not is_guard_of(int(pgid), workdir):
                continue
            try:
                os.killpg(int(pgid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue

    def _spawn(
        self,
        command: Command,
        workdir: Path,
        executable: str,
        env: dict[str, str],
        stdout_path: Path,
        stderr_path: Path,
    ) -> str:
        program = command.argv[0]
        argv = [sys.executable, "-I", "-S", str(_GUARD), str(os.getpid()), repr(self._grace_s), executable, "--"]
        try:
            with open(stdout_path, "ab") as out, open(stderr_path, "ab") as err:
                offset = err.seek(0, os.SEEK_END)
                proc = subprocess.Popen(
                    [*argv, *command.argv],
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as error:
            raise LaunchError(f"cannot start `{program}` in {workdir}: {error}; log: {stderr_path}") from error
        self._n_started += 1
        handle = f"{proc.pid}-{self._n_started}"
        self._jobs[handle] = _Job(handle, proc, program, workdir, stdout_path, stderr_path, offset)
        _LOG.debug("started local job %s: %s in %s", handle, program, workdir)
        return handle

    def _job(self, handle: str) -> _Job:
        job = self._jobs.get(handle)
        if job is None:
            raise KeyError(f"no local job `{handle}`")
        return job

    def _stop_jobs(self, jobs: list[_Job], grace_s: float) -> None:
        """SIGTERM every job's group, wait until all are gone or `grace_s` passes, then SIGKILL the rest."""
        live = [job for job in jobs if not _gone(job)]
        # Nothing running and nothing left behind: already stopped.
        if not live:
            return
        for job in live:
            if job.proc.poll() is None:
                job.stopped = True
            _signal_group(job.proc.pid, signal.SIGTERM)
        live = _wait_gone(live, grace_s)
        for job in live:
            _signal_group(job.proc.pid, signal.SIGKILL)
        for job in _wait_gone(live, _KILL_WAIT_S):
            _LOG.warning("local job %s (%s) still has processes after SIGKILL", job.handle, job.program)


def is_guard_of(pid: int, workdir: Path) -> bool:
    """Return True if process `pid` is the guard (`_guard.py`) of a trainer whose command line names `workdir`.

    A recorded process group id may since name anything; only the guard's command line (`_spawn`) makes it ours.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return _GUARD.name in cmdline and str(Path(workdir).absolute()) in cmdline


def _gone(job: _Job) -> bool:
    """Return True once the guard is reaped and its group is empty (and remember it)."""
    if job.ended:
        return True
    if job.proc.poll() is not None and not group_members(job.proc.pid):
        job.ended = True
    return job.ended


def _wait_gone(jobs: list[_Job], timeout_s: float) -> list[_Job]:
    """Wait up to `timeout_s` for the jobs to be gone; return those that are not."""
    deadline = time.monotonic() + timeout_s
    live = [job for job in jobs if not _gone(job)]
    while live and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        live = [job for job in live if not _gone(job)]
    return live


def _signal_group(pgid: int, number: int) -> None:
    try:
        os.killpg(pgid, number)
    except ProcessLookupError:
        pass


def _final_state(code: int, *, stopped: bool) -> JobState:
    """Map an exit code (negative: a signal) to a final state."""
    how = f"exited with {code}" if code >= 0 else f"killed by {_signal_name(-code)}"
    if stopped:
        return JobState(Status.CANCELLED, f"stopped by ablate ({how})", code)
    if code == 0:
        return JobState(Status.SUCCEEDED, how, code)
    if code < 0 and -code in _POLITE_SIGNALS:
        return JobState(Status.CANCELLED, f"{how} from outside ablate", code)
    return JobState(Status.FAILED, how, code)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _resolve_executable(program: str, workdir: Path, path: str) -> str | None:
    """Return the file `program` runs (a path is taken relative to `workdir`, a bare name looked up in PATH)."""
    if os.sep in program:
        candidate = Path(program) if os.path.isabs(program) else workdir / program
        return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    return shutil.which(program, path=path)


def _tail_lines(path: Path, offset: int, n_lines: int) -> str:
    """Return the last `n_lines` lines of `path` after byte `offset`, reading only the end of the file."""
    try:
        with open(path, "rb") as file:
            position = file.seek(0, os.SEEK_END)
            data = b""
            while position > offset and data.count(b"\n") <= n_lines:
                size = min(8192, position - offset)
                position -= size
                file.seek(position)
                data = file.read(size) + data
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-n_lines:])


def _note(path: Path, text: str) -> None:
    """Append a line to a log, if it can be written."""
    try:
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"ablate: {text}\n")
    except OSError:
        pass


_LAUNCHERS: weakref.WeakSet[LocalLauncher] = weakref.WeakSet()


@atexit.register
def _stop_every_launcher() -> None:
    """At interpreter exit, stop the jobs of every launcher still alive."""
    for launcher in list(_LAUNCHERS):
        launcher.stop_all()
