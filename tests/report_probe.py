"""Load a report.html in headless Chromium and read back what the browser laid out: each figure's size, the
validation panels with their seeds, the effects' intervals and zero lines, the survival curves and bands, and the
answer paragraph. Used by tests/test_report_html.py and tests/test_engine.py."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")

# Appended to a copy of the report: after load, write what the browser laid out into the DOM as JSON.
PROBE = """<script>window.addEventListener('load', () => {
const style = (g) => { const p = g.querySelector('path'); const s = getComputedStyle(p);
  return {stroke: s.stroke, width: parseFloat(s.strokeWidth)}; };
const box = (g) => { const r = g.getBoundingClientRect(); return {left: r.left, right: r.right, width: r.width, height: r.height}; };
const out = {panels: [], zeros: [], intervals: [], km: [], bands: [], figures: {}, answer: ''};
for (const f of document.querySelectorAll('figure[id^="fig-"]')) out.figures[f.id] = box(f.querySelector('svg'));
for (const g of document.querySelectorAll('#fig-validation g[id^="val-panel-"]')) {
  const seeds = [...g.querySelectorAll('g[id^="val-seed-"]')];
  const mean = g.querySelector('g[id^="val-mean-"]:not([id*="partial"])');
  out.panels.push({config: g.dataset.config, colour: g.dataset.colour, box: box(g),
    seeds: seeds.map(s => ({run: s.dataset.run, ...style(s)})), mean: mean ? style(mean) : null,
    onsets: [...g.querySelectorAll('g[id^="val-onset-"]')].map(o => o.dataset.run)});
}
for (const z of document.querySelectorAll('#fig-effects g[id^="zero-"]')) {
  const b = box(z); out.zeros.push({factor: z.dataset.factor, measure: z.dataset.measure, x: (b.left + b.right) / 2, height: b.height});
}
for (const i of document.querySelectorAll('#fig-effects g[id^="interval-"]'))
  out.intervals.push({factor: i.dataset.factor, level: i.dataset.level, measure: i.dataset.measure, ...box(i)});
for (const k of document.querySelectorAll('#fig-survival g[id^="km-"]')) {
  const entry = {factor: k.dataset.factor, level: k.dataset.level, ...box(k)};
  (k.id.startsWith('km-band-') ? out.bands : out.km).push(entry);
}
const answer = document.querySelector('h1 + p + p'); out.answer = answer ? answer.textContent : '';
const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);});</script>"""


def probe_report(page: Path, tmp_path: Path) -> dict[str, Any]:
    """Load a copy of `page` with the probe in headless Chromium and return what the probe wrote (skips where
    Chromium is absent)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (install it with `apt-get install -y chromium`)")
    copy = tmp_path / f"probe-{page.name}"
    copy.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    argv = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1200,900", "--virtual-time-budget=5000", "--dump-dom", copy.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    match = re.search(r'<pre id="probe">([^<]*)</pre>', dom)
    assert match, dom[-2000:]
    return json.loads(html.unescape(match.group(1)))
