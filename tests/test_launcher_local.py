"""The local launcher on real subprocesses: status mapping, stop with escalation, process groups, orphans, logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.errors import LaunchError
from orchestrator.launchers import Launcher, LocalLauncher, Status
from orchestrator.trainers import Command

PY = sys.executable

# A trainer that starts a child, writes "<its pid> <child pid>" to pids.txt and sleeps; with `ignore` as its
# argument it and its child ignore SIGTERM.
TRAINER = textwrap.dedent(
    """\
    import os, signal, subprocess, sys, time
    if "ignore" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open("pids.tmp", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.replace("pids.tmp", "pids.txt")
    if "exit" in sys.argv:
        sys.exit(0)
    time.sleep(60)
    """
)

# A process that launches TRAINER through a LocalLauncher, then sleeps (or, with `exit`, exits once it runs).
OWNER = textwrap.dedent(
    """\
    import sys, time
    from pathlib import Path
    from orchestrator.launchers.local import LocalLauncher
    from orchestrator.trainers import Command
    workdir, grace_s, mode = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    launcher = LocalLauncher(grace_s=grace_s)
    launcher.start(Command(tuple(sys.argv[4:])), workdir)
    while not (workdir / "pids.txt").exists():
        time.sleep(0.02)
    if mode == "exit":
        sys.exit(0)
    time.sleep(60)
    """
)


def _wait_for(path: Path, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


def _pids(workdir: Path) -> list[int]:
    return [int(pid) for pid in _wait_for(workdir / "pids.txt").split()]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _all_gone_within(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(_gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return all(_gone(pid) for pid in pids)


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> Command:
    return Command((PY, "-c", code, *args), env or {})


def test_local_launcher_satisfies_the_launcher_protocol() -> None:
    assert isinstance(LocalLauncher(), Launcher)


@pytest.mark.parametrize(
    ("code", "status", "exit_code"),
    [
        ("pass", Status.SUCCEEDED, 0),
        ("import sys; sys.exit(3)", Status.FAILED, 3),
        ("raise SystemExit('boom')", Status.FAILED, 1),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", Status.FAILED, -signal.SIGKILL),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", Status.FAILED, -signal.SIGSEGV),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", Status.CANCELLED, -signal.SIGTERM),
    ],
)
def test_local_launcher_exit_maps_to_status(tmp_path: Path, code: str, status: Status, exit_code: int) -> None:
    launcher = LocalLauncher()
    state = launcher.wait(launcher.start(_python(code), tmp_path), timeout_s=10)
    assert (state.status, state.exit_code) == (status, exit_code)
    assert state.status.done


def test_local_launcher_runs_the_argv_without_a_shell_in_the_workdir_with_env(tmp_path: Path) -> None:
    code = (
        "import os, sys; print(sys.argv[1]); print(os.getcwd()); "
        "print(os.environ['FROM_COMMAND'], os.environ['FROM_CALLER'], os.environ['CUDA_VISIBLE_DEVICES'])"
    )
    launcher = LocalLauncher()
    workdir = tmp_path / "trial"  # created by start
    handle = launcher.start(
        _python(code, "$HOME; echo hi", env={"FROM_COMMAND": "a", "FROM_CALLER": "x"}),
        workdir,
        attempt=2,
        env={"FROM_CALLER": "b"},
        gpus=[2, 3],
    )
    assert launcher.wait(handle, timeout_s=10).status is Status.SUCCEEDED
    stdout_path, stderr_path = launcher.log_paths(handle)
    assert (stdout_path.name, stderr_path.name) == ("attempt-2.stdout.log", "attempt-2.stderr.log")
    assert stdout_path.read_text().splitlines() == ["$HOME; echo hi", str(workdir), "a b 2,3"]


def test_local_launcher_job_leads_its_own_process_group(tmp_path: Path) -> None:
    launcher = LocalLauncher()
    handle = launcher.start(_python(TRAINER), tmp_path)
    trainer, child = _pids(tmp_path)
    assert os.getpgid(trainer) == os.getpgid(child) == launcher.pgid(handle) != os.getpgrp()
    launcher.stop(handle, grace_s=5)


def test_local_launcher_describes_a_job_by_its_group_and_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = LocalLauncher()
    handle = launcher.start(_python("import time; time.sleep(30)"), tmp_path)
    try:
        monkeypatch.delenv("SLURMD_NODENAME", raising=False)
        assert launcher.describe(handle) == {"pgid": launcher.pgid(handle), "node": socket.gethostname()}
        # Inside a Slurm allocation the node is Slurm's name for it (several test nodes may share one host).
        monkeypatch.setenv("SLURMD_NODENAME", "gpu-017")
        assert launcher.describe(handle)["node"] == "gpu-017"
    finally:
        launcher.stop(handle, grace_s=5)


def test_local_launcher_stop_takes_the_whole_group_and_marks_it_cancelled(tmp_path: Path) -> None:
    launcher = LocalLauncher()
    handle = launcher.start(_python(TRAINER), tmp_path)
    pids = _pids(tmp_path)
    assert launcher.poll(handle).status is Status.RUNNING
    started = time.monotonic()
    launcher.stop(handle, grace_s=5)
    assert time.monotonic() - started < 4  # SIGTERM was enough: no wait for the grace period
    assert all(_gone(pid) for pid in pids)
    state = launcher.poll(handle)
    assert (state.status, state.exit_code) == (Status.CANCELLED, -signal.SIGTERM)
    assert state.raw.startswith("stopped by ablate")


def test_local_launcher_stop_kills_a_group_that_ignores_sigterm_after_the_grace_period(tmp_path: Path) -> None:
    launcher = LocalLauncher()
    handle = launcher.start(_python(TRAINER, "ignore"), tmp_path)
    pids = _pids(tmp_path)
    started = time.monotonic()
    launcher.stop(handle, grace_s=0.5)
    assert 0.5 <= time.monotonic() - started < 5
    assert all(_gone(pid) for pid in pids)
    state = launcher.poll(handle)
    assert (state.status, state.exit_code) == (Status.CANCELLED, -signal.SIGKILL)


def test_local_launcher_stop_is_idempotent_and_keeps_a_finished_status(tmp_path: Path) -> None:
    launcher = LocalLauncher()
    handle = launcher.start(_python("import sys; sys.exit(4)"), tmp_path)
    assert launcher.wait(handle, timeout_s=10).status is Status.FAILED
    for _ in range(2):
        started = time.monotonic()
        launcher.stop(handle)
        assert time.monotonic() - started < 1
        assert (launcher.poll(handle).status, launcher.poll(handle).exit_code) == (Status.FAILED, 4)


def test_local_launcher_trainer_exit_takes_down_what_it_left_in_the_group(tmp_path: Path) -> None:
    launcher = LocalLauncher(grace_s=2)
    handle = launcher.start(_python(TRAINER, "exit"), tmp_path)
    pids = _pids(tmp_path)
    assert launcher.wait(handle, timeout_s=10).status is Status.SUCCEEDED
    assert all(_gone(pid) for pid in pids)


def test_local_launcher_stop_all_stops_every_job_in_one_grace_period(tmp_path: Path) -> None:
    launcher = LocalLauncher()
    workdirs = [tmp_path / "a", tmp_path / "b"]
    handles = [launcher.start(_python(TRAINER, "ignore"), workdir) for workdir in workdirs]
    pids = [pid for workdir in workdirs for pid in _pids(workdir)]
    started = time.monotonic()
    launcher.stop_all(grace_s=0.5)
    assert time.monotonic() - started < 3
    assert all(_gone(pid) for pid in pids)
    assert all(launcher.poll(handle).status is Status.CANCELLED for handle in handles)


def test_local_launcher_stderr_tail_returns_the_last_lines_of_this_start(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(int(sys.argv[1])): print(f'line {i}', file=sys.stderr)\nsys.exit(1)"
    launcher = LocalLauncher()
    first = launcher.start(_python(code, "500"), tmp_path, attempt=1)
    launcher.wait(first, timeout_s=10)
    assert launcher.stderr_tail(first, n_lines=3) == "line 497\nline 498\nline 499"
    assert len(launcher.stderr_tail(first).splitlines()) == 40
    again = launcher.start(_python(code, "2"), tmp_path, attempt=1)  # the same attempt started again: appended
    launcher.wait(again, timeout_s=10)
    assert launcher.stderr_tail(again) == "line 0\nline 1"
    assert (tmp_path / "attempt-1.stderr.log").read_text().count("\n") == 502


@pytest.mark.parametrize(
    ("program", "make"),
    [("no-such-trainer-xyz", False), ("./train.sh", True), ("/nonexistent/bin/python", False)],
)
def test_local_launcher_program_that_cannot_run_raises_launch_error(
    tmp_path: Path, program: str, make: bool
) -> None:
    if make:
        (tmp_path / "train.sh").write_text("#!/bin/sh\n")  # not executable
    with pytest.raises(LaunchError) as caught:
        LocalLauncher().start(Command((program, "--x")), tmp_path, attempt=3)
    message = str(caught.value)
    assert program in message and str(tmp_path) in message
    assert str(tmp_path / "attempt-3.stderr.log") in message
    assert program in (tmp_path / "attempt-3.stderr.log").read_text()


def test_local_launcher_unknown_handle_is_unknown_and_stop_ignores_it() -> None:
    launcher = LocalLauncher()
    assert launcher.poll("123-9").status is Status.UNKNOWN
    launcher.stop("123-9")
    with pytest.raises(KeyError, match="123-9"):
        launcher.stderr_tail("123-9")


@pytest.mark.parametrize("trainer_args", [(), ("ignore",)])
def test_local_launcher_owner_killed_by_sigkill_takes_the_trainer_and_its_child_down(
    tmp_path: Path, trainer_args: tuple[str, ...]
) -> None:
    grace_s = 1.0
    owner = subprocess.Popen([PY, "-c", OWNER, str(tmp_path), str(grace_s), "sleep", PY, "-c", TRAINER, *trainer_args])
    try:
        pids = _pids(tmp_path)
        assert not any(_gone(pid) for pid in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=5)
        assert _all_gone_within(pids, grace_s + 4)
    finally:
        owner.kill()
        owner.wait()
    assert "launching process" in (tmp_path / "attempt-0.stderr.log").read_text()


def test_local_launcher_owner_exiting_normally_stops_its_jobs_at_exit(tmp_path: Path) -> None:
    owner = subprocess.run(
        [PY, "-c", OWNER, str(tmp_path), "1", "exit", PY, "-c", TRAINER, "ignore"], timeout=30, check=True
    )
    assert owner.returncode == 0
    assert _all_gone_within(_pids(tmp_path), 1.0)


def test_local_launcher_job_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    launcher = LocalLauncher()
    handles: list[str] = []
    thread = threading.Thread(target=lambda: handles.append(launcher.start(_python(TRAINER), tmp_path)))
    thread.start()
    thread.join()
    pids = _pids(tmp_path)
    time.sleep(0.5)
    assert launcher.poll(handles[0]).status is Status.RUNNING
    assert not any(_gone(pid) for pid in pids)
    launcher.stop(handles[0], grace_s=5)


def test_local_launcher_guard_killed_outright_takes_the_trainer_down(tmp_path: Path) -> None:
    """Ray SIGKILLs a dead worker's children, the guard among them: the kernel then kills the trainer too."""
    launcher = LocalLauncher(grace_s=1.0)
    handle = launcher.start(Command(argv=(sys.executable, "-c", "import time; time.sleep(120)")), tmp_path)
    guard = psutil.Process(launcher.pgid(handle))
    deadline = time.monotonic() + 10
    while not guard.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    (trainer,) = guard.children()
    os.kill(guard.pid, signal.SIGKILL)
    trainer.wait(timeout=5)  # raises psutil.TimeoutExpired if the trainer outlived its guard
    assert not trainer.is_running()
    launcher.stop(handle)
