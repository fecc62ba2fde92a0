"""The guard: runs one trainer process and makes sure nothing of it outlives the process that launched it.

`LocalLauncher` does not start a trainer directly. It starts this script (standard library only, run by path with
`python -I -S`) as the leader of a new session and process group, and the script starts the trainer inside that
group:

    python -I -S _guard.py OWNER_PID GRACE_S EXECUTABLE -- ARGV...

The guard then

- waits for the trainer and exits the way the trainer did (the same exit code, or killed by the same signal), after
  stopping anything the trainer left running in the group (SIGTERM, `GRACE_S` seconds, SIGKILL);
- checks ten times a second that `OWNER_PID` is still its parent. When it is not, the launching process has died,
  even by SIGKILL, which runs no cleanup: the guard sends SIGTERM to the group, waits `GRACE_S` seconds, then
  SIGKILLs the group, itself included;
- has the kernel SIGKILL the trainer if the guard itself is killed outright (the parent death signal, Linux), as
  Ray does to a dead worker's children;
- ignores SIGTERM, SIGINT and SIGHUP. The launcher signals the whole group, so the trainer gets the same signal and
  decides what to do; the guard stays to report how it ended. A SIGKILL of the group ends everything at once.

Only a process that leaves the group (`setsid`, as Ray's own daemons do) escapes it; such processes must look after
themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

__all__ = ["group_members", "main"]

POLL_S = 0.1
"""How often the guard checks that the launching process is still there."""

_KILL_WAIT_S = 5.0
_PREFIX = "ablate-guard:"


def group_members(pgid: int) -> list[int]:
    """Return the live (not zombie) processes of a process group.

    Args:
        pgid: The process group id.

    Returns:
        Their pids (Linux: read from /proc). Without /proc, `[pgid]` if the group has any process, else [].
    """
    try:
        names = os.listdir("/proc")
    except FileNotFoundError:
        return _group_exists_without_proc(pgid)
    members = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields after it are state, ppid, pgrp.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(name))
    return members


def main(args: list[str]) -> int:
    """Run the trainer named in `args` (see the module docstring) and return the guard's exit code."""
    owner, grace_s, executable, argv = _parse(args)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, _ignore)
    # The launcher died before we got here: start nothing.
    if os.getppid() != owner:
        _say(f"the launching process {owner} is gone; not starting {argv[0]!r}")
        return 125
    try:
        trainer = subprocess.Popen(argv, executable=executable, preexec_fn=_die_with_guard(os.getpid()))
    except OSError as error:
        _say(f"cannot start {argv[0]!r}: {error}")
        return 127
    pgid = os.getpgrp()
    code = _wait_or_owner_gone(trainer, owner)
    if code is None:
        _say(f"the launching process {owner} is gone: stopping the trainer (SIGTERM, then SIGKILL after {grace_s} s)")
        _stop_others(pgid, grace_s, trainer)
        code = trainer.wait()
    # The trainer has ended: stop whatever it left behind in the group.
    if _others(pgid):
        _stop_others(pgid, grace_s, trainer)
    return _exit_like(code)


def _die_with_guard(guard: int):  # noqa: ANN202 (returns a preexec_fn, or None)
    """Return a preexec_fn that has the kernel SIGKILL the trainer if the guard itself is killed (Linux).

    A guard killed outright (Ray kills a dead worker's children with SIGKILL) cannot stop the trainer; the parent
    death signal does. The guard has one thread, so a preexec_fn is safe here.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        # The guard died between fork and prctl: the signal will never come, so go now.
        if os.getppid() != guard:
            os._exit(125)

    return set_parent_death_signal


def _parse(args: list[str]) -> tuple[int, float, str, list[str]]:
    if len(args) < 5 or args[3] != "--":
        raise SystemExit(f"usage: {sys.argv[0]} OWNER_PID GRACE_S EXECUTABLE -- ARGV...")
    return int(args[0]), float(args[1]), args[2], args[4:]


def _wait_or_owner_gone(trainer: subprocess.Popen[bytes], owner: int) -> int | None:
    """Return the trainer's exit code, or None as soon as the launching process is no longer our parent."""
    while True:
        try:
            return trainer.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != owner:
            return None


def _stop_others(pgid: int, grace_s: float, trainer: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group (the guard ignores it), wait up to `grace_s`, then SIGKILL every other member."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        trainer.poll()  # reap the trainer as soon as it exits
        if not _others(pgid):
            return
        time.sleep(0.05)
    deadline = time.monotonic() + _KILL_WAIT_S
    # Kill member by member rather than the whole group, so that the guard lives to report the trainer's end.
    while time.monotonic() < deadline:
        trainer.poll()
        others = _others(pgid)
        if not others:
            return
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _others(pgid: int) -> list[int]:
    return [pid for pid in group_members(pgid) if pid != os.getpid()]


def _signal_group(pgid: int, number: int) -> None:
    try:
        os.killpg(pgid, number)
    except ProcessLookupError:
        pass


def _exit_like(code: int) -> int:
    """Return `code`, or, for a trainer killed by a signal, die by the same signal."""
    if code >= 0:
        return code
    number = -code
    # SIGKILL and SIGSTOP cannot be caught, so only the others need their default action back.
    if number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    time.sleep(1.0)
    return 128 + number


def _group_exists_without_proc(pgid: int) -> list[int]:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        return [pgid]
    return [pgid]


def _ignore(number: int, frame: object) -> None:
    """Signal handler that does nothing (unlike SIG_IGN, a handler is not inherited by the trainer's exec)."""


def _say(text: str) -> None:
    print(f"{_PREFIX} {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
