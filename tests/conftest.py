"""Fixtures shared by several test files."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

# Appended to a copy of the report: after the page has loaded, write each image's decoded size into the DOM.
PROBE = (
    "<script>window.addEventListener('load', () => {"
    "const p = document.createElement('pre'); p.id = 'decoded';"
    "p.textContent = [...document.images].map(i => i.complete ? i.naturalWidth + 'x' + i.naturalHeight : 'pending').join(',');"
    "document.body.appendChild(p);});</script>"
)


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
