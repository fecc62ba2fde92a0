"""The service's worker: runs queued sweeps, a configurable number at once, on one shared Ray cluster.

Each sweep runs as `ablate run SPEC --out DIR --address RAY` in a child process (`orchestrator.cli._child`), in its own process group,
so the service runs sweeps through exactly the engine `ablate run` uses:

- cancel: SIGINT to the child's group, which stops its trainers cleanly as Ctrl-C does;
- service stop: the same SIGINT to every running sweep, which stays `running` in the queue and is run again on its
  directory (a resume) at the next start; a sweep whose service died without stopping gets the same SIGINT from
  its child's stdin watch, and the same resume;
- the Ray cluster: one local Ray head the service starts (`_ray_head`, token authentication with a token made per
  start) and stops, or an existing cluster (`--address`). If the head dies under running sweeps (its processes
  killed by `ray stop` or the OOM killer), they go back in the queue and resume on a new head.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from orchestrator.errors import AblateError
from orchestrator.service._db import ServiceDB, ServiceSweep

log = logging.getLogger("ablate.service")

SWEEPS_DIR = "sweeps"
SPEC_FILE = "spec.yaml"
RUN_DIR = "run"
LOG_FILE = "run.log"
INTERRUPTED = 130
GCS_RECONNECT_TIMEOUT_S = 15  # seconds a sweep driver waits for a GCS that stopped answering (Ray: 60)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def sweep_home(state_dir: Path, sweep_id: str) -> Path:
    """Return the folder of a service sweep: its spec, its run directory (the engine's sweep dir) and its log."""
    return state_dir / SWEEPS_DIR / sweep_id


class RayHead:
    """A local Ray head owned by the service (`_ray_head` in a child process).

    Args:
        cpus, gpus: The cluster's CPUs and (possibly logical) GPUs; None lets Ray detect them.
        log_path: Where the head's output goes.
        niceness: How much to lower the priority of Ray's processes (and so of the trainers its workers start).
    """

    def __init__(self, *, cpus: int | None, gpus: int | None, log_path: Path, niceness: int = 0) -> None:
        self._cpus, self._gpus, self._log_path, self._niceness = cpus, gpus, log_path, niceness
        self._proc: subprocess.Popen[bytes] | None = None
        self.token = secrets.token_hex(32)
        self.address: str | None = None
        self.resources: dict[str, float] = {}

    def env(self) -> dict[str, str]:
        """Return the environment a Ray driver needs to join this cluster."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    @property
    def pid(self) -> int | None:
        """Return the head keeper's process id (None before start)."""
        return None if self._proc is None else self._proc.pid

    def start(self, timeout_s: float = 300.0) -> None:
        """Start the head and wait for its address.

        Raises:
            AblateError: If the head exits or does not report its address in time.
        """
        argv = [sys.executable, "-m", "orchestrator.service._ray_head"]
        if self._cpus is not None:
            argv += ["--cpus", str(self._cpus)]
        if self._gpus is not None:
            argv += ["--gpus", str(self._gpus)]
        if self._niceness:
            argv += ["--nice", str(self._niceness)]
        with open(self._log_path, "ab") as logfile:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logfile,
                env={**os.environ, **self.env()},
                start_new_session=True,
            )
        assert self._proc.stdout is not None
        line = _read_line(self._proc.stdout, timeout_s)
        if not line:
            self.stop()
            raise AblateError(f"the service's Ray head did not start; see {self._log_path}")
        info = json.loads(line)
        self.address = info["address"]
        self.resources = {k: float(v) for k, v in info["resources"].items()}

    def alive(self) -> bool:
        """Return True while the head's keeper process runs (it exits when Ray's processes die)."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace_s: float = 60.0) -> None:
        """Shut the head down (close its stdin; SIGTERM, then SIGKILL its group if it lingers). Idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()


def _read_line(stream: IO[bytes], timeout_s: float) -> str:
    result: list[bytes] = []
    thread = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    return result[0].decode().strip() if result else ""


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class _Running:
    sweep_id: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]


class Worker:
    """Runs the queued sweeps of a `ServiceDB` in child processes.

    Args:
        db: The service's queue.
        state_dir: The service's state folder (sweeps go under `sweeps/<id>/`).
        max_running: How many sweeps run at once (they share the Ray cluster, whose CPUs and GPUs bound how many
            trials run at once in all).
        address: An existing Ray cluster; None starts a local head for the service.
        cpus, gpus: The local head's resources (None: detected).
        poll_s: How often the worker looks at the queue and its children.
        stop_grace_s: How long a stopping sweep has to end cleanly before its process group is killed.
        niceness: How much lower than the service's the priority of the sweeps' processes is (their `ablate run`, and
            through the service's Ray head its workers and the trainers), so that the API stays responsive on a
            machine that trains (0: the same).
    """

    def __init__(
        self,
        db: ServiceDB,
        state_dir: Path,
        *,
        max_running: int = 1,
        address: str | None = None,
        cpus: int | None = None,
        gpus: int | None = None,
        poll_s: float = 0.5,
        stop_grace_s: float = 120.0,
        niceness: int = 5,
    ) -> None:
        if max_running < 1:
            raise ValueError(f"`max_running` must be >= 1 (got {max_running})")
        if not 0 <= niceness <= 19:
            raise ValueError(f"`niceness` must be between 0 and 19 (got {niceness})")
        self._niceness = niceness
        self._db = db
        self._state = state_dir
        self._max_running = max_running
        self._address = address
        self._head_log = state_dir / "ray-head.log"
        self._head = None if address else RayHead(cpus=cpus, gpus=gpus, log_path=self._head_log, niceness=niceness)
        self._poll_s = poll_s
        self._stop_grace_s = stop_grace_s
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.error: str | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Requeue what a previous service left running, then start the worker thread (which starts Ray)."""
        for sweep_id in self._db.requeue_running():
            log.info("sweep %s was running when the service stopped: it resumes", sweep_id)
        self._thread = threading.Thread(target=self._loop, name="ablate-service-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Interrupt every running sweep (they stay `running` and resume at the next start), then stop Ray."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive() and self._head is not None:
                # Still waiting for Ray to come up: stop it, which ends the wait.
                self._head.stop(grace_s=5)
                self._thread.join(timeout=30)
        with self._lock:
            running = list(self._running.values())
        for run in running:
            _signal_group(run.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + self._stop_grace_s
        for run in running:
            try:
                run.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("sweep %s did not stop within %.0f s: killing it", run.sweep_id, self._stop_grace_s)
                _signal_group(run.proc.pid, signal.SIGKILL)
                run.proc.wait()
            self._close(run)
            # A sweep that ended by itself or was being cancelled is settled; an interrupted one resumes next start.
            if run.proc.returncode == 0 or self._db.get_sweep(run.sweep_id).cancel_requested:
                self._finish(run.sweep_id, run.proc.returncode)
        with self._lock:
            self._running.clear()
        if self._head is not None:
            self._head.stop()

    def wake(self) -> None:
        """Look at the queue now (a sweep was submitted or cancelled)."""
        self._wake.set()

    @property
    def resources(self) -> dict[str, float]:
        """Return the Ray cluster's CPUs and GPUs when the service started it (empty otherwise, or before)."""
        return dict(self._head.resources) if self._head is not None else {}

    @property
    def ray_head_pid(self) -> int | None:
        """Return the process id of the service's Ray head keeper (None with `--address`)."""
        return None if self._head is None else self._head.pid

    def running_pids(self) -> dict[str, int]:
        """Return the process id of each running sweep's child."""
        with self._lock:
            return {sweep_id: run.proc.pid for sweep_id, run in self._running.items()}

    # ---- cancel ----------------------------------------------------------------------------------------------

    def cancel(self, sweep_id: str) -> ServiceSweep:
        """Cancel a sweep and return it: a queued one at once, a running one by SIGINT to its process group.

        Raises:
            KeyError: If there is no sweep `sweep_id`.
        """
        sweep = self._db.request_cancel(sweep_id)
        if sweep.status == "cancelled":
            _cancel_trials(sweep_home(self._state, sweep_id) / RUN_DIR, sweep.name)
            return sweep
        with self._lock:
            run = self._running.get(sweep_id)
        if run is not None:
            _signal_group(run.proc.pid, signal.SIGINT)
        self._wake.set()
        return sweep

    # ---- the loop --------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        if not self._start_head():
            return
        self.ready.set()
        while not self._stopping.is_set():
            try:
                if self._head is not None and not self._head.alive():
                    self._recover_head()
                self._reap()
                self._launch()
            except Exception:  # a bug in one pass must not stop the service's queue
                log.exception("the service's worker failed a pass; it goes on")
            self._wake.wait(self._poll_s)
            self._wake.clear()

    def _start_head(self) -> bool:
        """Start the service's Ray head (if it has one), trying again until it is up; False if the service stops."""
        if self._head is None:
            return True
        # Ray's start-up can time out on a loaded machine: try again until it comes up or the service stops.
        while not self._stopping.is_set():
            try:
                self._head.start()
            except (AblateError, OSError, ValueError) as exc:
                self.error = str(exc)
                log.error("%s; trying again in 10 s", exc)
                self._stopping.wait(10)
                continue
            self.error = None
            return True
        return False

    def _recover_head(self) -> None:
        """The Ray head died under the running sweeps: stop them, put them back in the queue, start a new head."""
        assert self._head is not None
        log.error("the service's Ray cluster died (see %s): its sweeps go back in the queue and resume on a new one", self._head_log)
        self.ready.clear()
        with self._lock:
            running = list(self._running.values())
            self._running.clear()
        for run in running:
            _signal_group(run.proc.pid, signal.SIGINT)
        for run in running:
            try:
                run.proc.wait(timeout=self._stop_grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(run.proc.pid, signal.SIGKILL)
                run.proc.wait()
            self._close(run)
            if self._db.get_sweep(run.sweep_id).cancel_requested:
                self._finish(run.sweep_id, run.proc.returncode)
            else:
                self._db.update(run.sweep_id, status="queued")
        self._head.stop(grace_s=10)
        if self._start_head():
            self.ready.set()

    def _launch(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if len(self._running) >= self._max_running:
                    return
            sweep = self._db.claim_next()
            if sweep is None:
                return
            try:
                self._start(sweep.id)
            except OSError as exc:
                self._db.update(sweep.id, status="failed", finished=time.time(), error=f"cannot start the sweep: {exc}")

    def _start(self, sweep_id: str) -> None:
        home = sweep_home(self._state, sweep_id)
        argv = [
            sys.executable, "-m", "orchestrator.cli._child", "--nice", str(self._niceness),
            "run", str(home / SPEC_FILE), "--out", str(home / RUN_DIR), "--no-validate",
        ]  # fmt: skip
        env = dict(os.environ)
        if self._head is not None:
            env.update(self._head.env())
            # The head is the service's own, without GCS fault tolerance: a GCS that stops answering has died with
            # it. The sweep's driver then gives up after this long instead of Ray's default 60 s, so that a sweep
            # interrupted by the head's death (or by the service's) ends and resumes sooner.
            env.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(GCS_RECONNECT_TIMEOUT_S))
            argv += ["--address", str(self._head.address)]
        else:
            argv += ["--address", str(self._address)]
        env["PYTHONUNBUFFERED"] = "1"
        logfile = open(home / LOG_FILE, "ab")
        logfile.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} ablate {' '.join(argv[5:])}\n".encode())
        logfile.flush()
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=logfile, stderr=subprocess.STDOUT, env=env, cwd=home, start_new_session=True
        )
        with self._lock:
            self._running[sweep_id] = _Running(sweep_id, proc, logfile)
        log.info("sweep %s: started (pid %d)", sweep_id, proc.pid)
        # A cancel that came between the claim and the start.
        if self._db.get_sweep(sweep_id).cancel_requested:
            _signal_group(proc.pid, signal.SIGINT)

    def _reap(self) -> None:
        with self._lock:
            finished = [run for run in self._running.values() if run.proc.poll() is not None]
            for run in finished:
                del self._running[run.sweep_id]
        head_lost = self._head is not None and not self._head.alive()
        for run in finished:
            self._close(run)
            if head_lost and run.proc.returncode != 0 and not self._db.get_sweep(run.sweep_id).cancel_requested:
                # It failed because its Ray cluster died: it resumes once a new one is up.
                self._db.update(run.sweep_id, status="queued")
                continue
            self._finish(run.sweep_id, run.proc.returncode)

    def _finish(self, sweep_id: str, code: int) -> None:
        sweep = self._db.get_sweep(sweep_id)
        now = time.time()
        if sweep.cancel_requested:
            _cancel_trials(sweep_home(self._state, sweep_id) / RUN_DIR, sweep.name)
            self._db.update(sweep_id, status="cancelled", finished=now, exit_code=code)
        elif code == 0:
            self._db.update(sweep_id, status="completed", finished=now, exit_code=code, error=None)
        else:
            error = _last_error(sweep_home(self._state, sweep_id) / LOG_FILE) or f"`ablate run` exited with status {code}"
            self._db.update(sweep_id, status="failed", finished=now, exit_code=code, error=error)
        log.info("sweep %s: ended (exit %d)", sweep_id, code)

    @staticmethod
    def _close(run: _Running) -> None:
        for stream in (run.proc.stdin, run.log):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def _cancel_trials(run_dir: Path, name: str) -> None:
    """Record the trials a cancel stopped before they ended as `cancelled` in the sweep's store."""
    from orchestrator.store import TERMINAL, SQLiteStore
    from orchestrator.sweepdir import SweepDir

    folder = SweepDir(run_dir)
    if not folder.exists():
        return
    with SQLiteStore(folder.db) as store:
        if name not in {s.id for s in store.list_sweeps()}:
            return
        for record in store.list_trials(name):
            if record.status not in TERMINAL:
                store.set_trial_stop(record.id, "cancelled", step=record.last_step)
                store.append_event(record.id, "cancelled", data={"by": "service"})
        store.set_sweep_status(name, "cancelled")


def _last_error(log_path: Path) -> str | None:
    """Return the last `error:` line of a sweep's log (the CLI's one-line user errors), or its last line."""
    try:
        lines = [_ANSI.sub("", line).strip() for line in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        return None
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1].removeprefix("error:").strip()
    return lines[-1] if lines else None

