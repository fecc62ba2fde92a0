"""Run an `ablate` command as the service's child: interrupted (as by Ctrl-C) as soon as the service goes away.

`python -m orchestrator.cli._child [--nice N] ARGS...` runs `ablate ARGS...` in this process. A thread reads standard
input, a pipe whose other end only the service holds: when the service exits, however it exits (SIGKILL included),
the pipe reaches end-of-file, and the thread sends SIGINT to this process, which stops the sweep cleanly and leaves
it resumable, exactly as Ctrl-C on `ablate run` does. If that does not end the process within the grace period, it
exits hard; the trainers' guards then stop the trainers.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

GRACE_S = 120.0


def _watch_stdin() -> None:
    try:
        while os.read(0, 4096):
            pass
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(GRACE_S)
    os._exit(130)


def main(args: list[str]) -> None:
    """Run `ablate args...`, watching standard input for the service's exit.

    A leading `--nice N` first lowers this process's priority by N (the trainers it starts inherit it), so that the
    service's API stays responsive on the machine that trains.
    """
    if args[:1] == ["--nice"]:
        os.nice(int(args[1]))
        args = args[2:]
    threading.Thread(target=_watch_stdin, name="ablate-service-watch", daemon=True).start()
    from orchestrator.cli import app

    app(args=args, prog_name="ablate")


if __name__ == "__main__":
    main(sys.argv[1:])
