"""Fixtures shared by several test files, and the rule that under CI nothing is skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.minigrpo import numerics

# The miniature's kernels are pinned before anything imports torch, in this process and (inherited) in every
# process it starts, so that a seed's run, and each test's expectation of it, is the same on any x86 machine.
numerics.pin()


def _in_ci() -> bool:
    """Whether the suite runs under CI (`CI=true`, as CI services set it), where every test must run."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _fail_skip_in_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under CI, turn a skip (a missing Chromium, a Slurm that did not start) into a failure that gives its reason.

    Locally a test whose requirement is missing still skips with its reason; under CI a skipped suite would let the
    run pass without testing what it names, so it fails instead.
    """
    if not (report.skipped and _in_ci()) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where every test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.fixture(scope="session")
def minigrpo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One warm-start cache (ABLATE_CACHE_DIR) for the whole run, shared by the xdist workers.

    A warm start depends only on its settings, which are in its file name, and the trainer writes each file once
    under a lock, so every test and worker can share the folder: each warm start is trained once per run.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    cache = root / "minigrpo-cache"
    cache.mkdir(exist_ok=True)
    return cache
