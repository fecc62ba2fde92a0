"""Screenshots of a sweep's report.html in headless Chromium, for the README.

Usage: python benchmarks/report_screenshots.py SWEEP_DIR
    -> benchmarks/results/report_top.png (the answer and the validation panels)
       benchmarks/results/report_effects.png (the effects' intervals and the survival curves)

SWEEP_DIR is a finished sweep, e.g. `ablate run sweeps/demo.yaml --out /tmp/demo` (about 3 to 6 minutes on 2 cores).
The report is written to SWEEP_DIR/report/ first.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# Shot name -> (CSS that hides what the shot leaves out, window height in pixels).
SHOTS = {
    "report_top": ("", 1500),
    "report_effects": ("body>*:not(#fig-effects):not(#fig-survival){display:none}", 1580),
}


def _abort(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(sweep_dir: Path) -> None:
    if not (sweep_dir / "sweep.db").is_file():
        _abort(f"{sweep_dir} holds no sweep.db (run `ablate run SPEC --out {sweep_dir}` first)")
    if not CHROMIUM.exists():
        _abort(f"{CHROMIUM} is absent (install it with `apt-get install -y chromium`)")
    from orchestrator.report import report_sweep

    html = report_sweep(sweep_dir, sweep_dir / "report").files.html
    out = ROOT / "benchmarks" / "results"
    with tempfile.TemporaryDirectory() as work:
        for name, (css, height) in SHOTS.items():
            page = Path(work) / f"{name}.html"
            page.write_text(html.read_text().replace("</head>", f"<style>{css}</style></head>"))
            argv = [
                str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={Path(work) / 'chromium'}", "--virtual-time-budget=5000",
                f"--window-size=1150,{height}", f"--screenshot={out / f'{name}.png'}", page.as_uri(),
            ]  # fmt: skip
            subprocess.run(argv, capture_output=True, timeout=120, check=True)
            print(out / f"{name}.png", f"{(out / f'{name}.png').stat().st_size // 1024} KiB")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        _abort("usage: python benchmarks/report_screenshots.py SWEEP_DIR")
    main(Path(sys.argv[1]))
