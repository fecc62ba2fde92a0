"""Fixtures shared by several test files, and the rule that under CI nothing is skipped."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


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

# Appended to a copy of the report: after the page has loaded, write each image's decoded size into the DOM.
PROBE = (
    "<script>window.addEventListener('load', () => {"
    "const p = document.createElement('pre'); p.id = 'decoded';"
    "p.textContent = [...document.images].map(i => i.complete ? i.naturalWidth + 'x' + i.naturalHeight : 'pending').join(',');"
    "document.body.appendChild(p);});</script>"
)


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


@pytest.fixture
def decoded_image_sizes() -> Callable[[Path, Path], list[str]]:
    """Return a function that loads an HTML file in headless Chromium and gives each image's decoded `WxH`."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (install it with `apt-get install -y chromium`)")

    def _decoded_sizes(html: Path, tmp_path: Path) -> list[str]:
        """Load `html` with the probe in headless Chromium and return each image's `WIDTHxHEIGHT`."""
        probe = tmp_path / f"probe-{html.name}"
        probe.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
        argv = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=5000", "--dump-dom", probe.as_uri(),
        ]  # fmt: skip
        dom = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
        match = re.search(r'<pre id="decoded">([^<]*)</pre>', dom)
        assert match, dom[-2000:]
        return match.group(1).split(",")

    return _decoded_sizes
