"""What the end-to-end tests share: small miniature sweeps, the `ablate` CLI in a subprocess, trainer processes.

Imported by the test modules that run real sweeps (tests/ is put on sys.path by each; pytest runs with
--import-mode=importlib, so the folder is not a package).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from orchestrator.store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
ABLATE = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
# The miniature's warm start, shortened for tests (cached once per test run: conftest's `minigrpo_cache`).
FAST = "{mini.warm_start.steps: 600}"
COLLAPSING_LR = 5e-3  # collapses within 5 steps of a 600-step warm start
HEALTHY_LR = 1e-3


def write_spec(tmp_path: Path, name: str, body: str) -> Path:
    """Write a miniature sweep spec named `name` (the original settings, the short warm start) plus `body`."""
    text = f"name: {name}\ntrainer: {{backend: mini, base: {ROOT}/configs/mini/original.yaml, overrides: {FAST}}}\n"
    path = tmp_path / f"{name}.yaml"
    path.write_text(text + textwrap.dedent(body))
    return path


def run_ablate(args: list[str], env: dict[str, str], timeout: int = 420) -> subprocess.CompletedProcess[str]:
    """Run `ablate ARGS` in a subprocess and return its result (output captured as text)."""
    return subprocess.run([*ABLATE, *args], capture_output=True, text=True, env=env, timeout=timeout)


def trainers(marker: Path) -> list[psutil.Process]:
    """Return the live trainer processes whose command line names `marker` (a sweep or state directory)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "orchestrator.minigrpo" in cmdline and str(marker) in cmdline and not cmdline.startswith(("bash", "/bin/bash")):
            found.append(proc)
    return found


def wait_until_no_trainers(marker: Path, timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` seconds for every trainer of `marker` to exit; return those still alive (none: all gone)."""
    deadline = time.monotonic() + timeout
    while trainers(marker) and time.monotonic() < deadline:
        time.sleep(1)
    return trainers(marker)


def wait_for_trial(out: Path, ready: Callable[[SQLiteStore, Any], bool], timeout: float, what: str) -> tuple[SQLiteStore, Any]:
    """Poll a running sweep's store until one of its trials satisfies `ready(store, record)`.

    Returns an open store (the caller closes it) and that trial's record.

    Raises:
        AssertionError: Naming `what`, if no trial is ready within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if not (out / "sweep.db").exists():
            continue
        store = SQLiteStore(out / "sweep.db")
        sweeps = store.list_sweeps()
        for trial in store.list_trials(sweeps[0].id) if sweeps else []:
            if ready(store, trial):
                return store, trial
        store.close()
    raise AssertionError(f"no trial {what} in {timeout} s")
