"""`Launcher.release`: what an earlier attempt left running is ended, and nothing else is touched.

The local launcher kills a left-behind process group only while its leader is still the guard of a trainer writing
into the trial's directory, on this node. The Slurm launcher's release (cancelling the recorded jobs Slurm still
queues or runs) runs on a real Slurm in tests/test_slurm.py: an ASHA stop cancels its job through it, and
resubmitted trials release their earlier jobs before they start.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.launchers import Launcher, LocalLauncher, Status
from orchestrator.launchers._guard import group_members
from orchestrator.trainers import Command

PY = sys.executable


def _wait_for_cmdline(pid: int) -> None:
    # A process just started shows an empty command line for a moment, while it execs.
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)


def _group_gone(pgid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not group_members(pgid)


def test_local_release_kills_only_this_trials_left_behind_guard(tmp_path: Path) -> None:
    workdir = tmp_path / "trials" / "t"
    worker = LocalLauncher(grace_s=1.0)  # the launcher of a worker that died without stopping its trainer
    handle = worker.start(
        Command((PY, "-c", "import time; time.sleep(60)", f"trainer.default_local_dir={workdir}/checkpoints")), workdir
    )
    try:
        recorded = {**worker.describe(handle), "gpus": [], "argv": ["python"]}
        pgid = int(recorded["pgid"])
        _wait_for_cmdline(pgid)
        fresh = LocalLauncher(grace_s=1.0)

        fresh.release([recorded], tmp_path / "trials" / "other")
        fresh.release([{**recorded, "node": "another-node"}], workdir)
        fresh.release([{"job_id": "12"}, {}, {"pgid": None}], workdir)
        assert worker.poll(handle).status is Status.RUNNING

        fresh.release([recorded], workdir)
        state = worker.wait(handle, timeout_s=10)
        assert state.status.done and state.exit_code == -signal.SIGKILL
        assert _group_gone(pgid)
    finally:
        worker.stop(handle)


def test_local_release_leaves_a_group_that_is_not_a_guard_alone(tmp_path: Path) -> None:
    workdir = tmp_path / "trials" / "t"
    # A process group whose leader names the workdir but is not a guard: a reused id must not be killed.
    other = subprocess.Popen([PY, "-c", "import time, sys; time.sleep(60)", str(workdir)], start_new_session=True)
    try:
        _wait_for_cmdline(other.pid)
        LocalLauncher(grace_s=1.0).release([{"pgid": other.pid}], workdir)
        time.sleep(0.2)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_launcher_without_release_is_not_a_launcher() -> None:
    class Partial:
        detached = False

        def start(self, *args: Any, **kwargs: Any) -> str:
            return ""

        def poll(self, handle: str) -> Any:
            return None

        def wait(self, handle: str, timeout_s: float | None = None) -> Any:
            return None

        def stop(self, handle: str, grace_s: float = 10.0) -> None:
            return None

        def stderr_tail(self, handle: str, n_lines: int = 40) -> str:
            return ""

        def log_paths(self, handle: str) -> Any:
            return None

        def describe(self, handle: str) -> Any:
            return {}

    class Whole(Partial):
        def release(self, started: Any, workdir: Path) -> None:
            return None

    assert not isinstance(Partial(), Launcher)
    assert isinstance(Whole(), Launcher)
