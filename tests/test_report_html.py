"""report.html opens in headless Chromium with every embedded plot decoded (skipped where Chromium is absent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.history import StepMetrics
from orchestrator.report import RunInput, build_report, write_report

CHROMIUM = Path("/usr/bin/chromium")
VAL = "val-core/demo/acc/mean@1"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (install it with `apt-get install -y chromium`)"
)

def _history(collapse_at: int | None, peak: float) -> list[StepMetrics]:
    points = []
    for step in range(1, 81):
        alive = collapse_at is None or step < collapse_at
        metrics = {"actor/entropy": 1.0 if alive else 0.02, "response_length/mean": 300.0 if alive else 9.0}
        if step % 10 == 0:
            metrics[VAL] = min(peak, peak * step / 40) if alive else 0.0
        points.append(StepMetrics(step, metrics))
    return points


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = [
        RunInput(f"kl{kl}_s{s}", _history(None if kl == "0.01" else 40 + 10 * s, 0.5 + 0.01 * s), {"kl": kl}, s)
        for kl in ("0", "0.01")
        for s in (1, 2, 3)
    ]
    files = write_report(build_report(runs), tmp_path_factory.mktemp("report"))
    return files.html


def test_report_html_images_decode_in_chromium(report_html: Path, tmp_path: Path, decoded_image_sizes: Callable[[Path, Path], list[str]]) -> None:
    text = report_html.read_text()
    n_images = text.count('src="data:image/png;base64,')
    assert n_images == 4 and "<img" in text and 'src="file:' not in text  # self-contained
    sizes = decoded_image_sizes(report_html, tmp_path)
    assert len(sizes) == n_images
    for size in sizes:
        width, height = map(int, size.split("x"))
        assert width > 200 and height > 200, sizes


def test_report_html_probe_sees_a_broken_image(report_html: Path, tmp_path: Path, decoded_image_sizes: Callable[[Path, Path], list[str]]) -> None:
    # The check can fail: an image whose data is corrupt decodes to 0x0.
    broken = tmp_path / "broken.html"
    broken.write_text(report_html.read_text().replace("base64,iVBOR", "base64,AAAA", 1))
    sizes = decoded_image_sizes(broken, tmp_path)
    assert sizes[0] == "0x0" and all(s != "0x0" for s in sizes[1:])
