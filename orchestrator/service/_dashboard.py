"""The dashboard: server-rendered HTML pages with inline SVG curves (no JavaScript library, no build step).

`sweeps_page` lists the sweeps; `sweep_page` shows one sweep's trials (status, step, best, stop reason and why) and
the objective of every trial against the training step, with a cross at each trial's collapse onset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 760, 320, 56, 16, 16, 40

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;font-size:.9rem;vertical-align:top}
th{background:#f4f4f4}
.status-completed{color:#2a7}.status-failed{color:#c33}.status-cancelled{color:#888}
.status-running{color:#17c}.status-stopped{color:#c70}
svg text{font-size:11px;fill:#444}
.legend span{display:inline-block;margin-right:1rem;font-size:.85rem}
.legend i{display:inline-block;width:14px;height:3px;margin-right:4px;vertical-align:middle}
"""


def page(title: str, body: str, *, refresh_s: int | None = None) -> str:
    """Return a complete HTML page."""
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>{refresh}'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def login_page(next_path: str, *, failed: bool = False) -> str:
    """Return the sign-in page: a form for the token; a `#token=...` fragment in the URL fills and sends it.

    The fragment never reaches the server (so never its logs); the form posts the token in the request body.
    """
    note = '<p class="status-failed">Wrong token.</p>' if failed else ""
    body = (
        "<h1>ablate: sign in</h1>"
        f"{note}<p>Paste the service's token (the file <code>token</code> in its state folder).</p>"
        '<form id="login" method="post" action="/login">'
        '<input type="password" name="token" id="token" autocomplete="current-password" size="50">'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        " <button type=\"submit\">Sign in</button></form>"
        "<script>const m=/[#&]token=([^&]+)/.exec(location.hash);"
        "if(m){history.replaceState(null,'',location.pathname+location.search);"
        "document.getElementById('token').value=decodeURIComponent(m[1]);document.getElementById('login').submit();}"
        "</script>"
    )
    return page("ablate: sign in", body)


def unauthorized_page() -> str:
    """Return the body of a 401 for a browser."""
    return page("ablate: unauthorized", '<h1>401: sign in first</h1><p><a href="/login">Sign in</a> with the service\'s token.</p>')


def sweeps_page(sweeps: Sequence[Mapping[str, Any]]) -> str:
    """Return the page listing every sweep with its status and trial counts."""
    rows = []
    for s in reversed(list(sweeps)):
        counts = ", ".join(f"{n} {k}" for k, n in s["trials"].items() if n)
        rows.append(
            f'<tr><td><a href="/dashboard/sweeps/{escape(s["id"])}">{escape(s["id"])}</a></td>'
            f'<td class="status-{escape(s["status"])}">{escape(s["status"])}</td><td>{s["n_trials"]}</td>'
            f"<td>{escape(counts)}</td><td>{_time(s['submitted'])}</td><td>{escape(s.get('error') or '')}</td></tr>"
        )
    table = (
        "<table id=\"sweeps\"><tr><th>sweep</th><th>status</th><th>trials</th><th>by status</th><th>submitted</th>"
        f"<th>error</th></tr>{''.join(rows)}</table>"
        if rows
        else "<p>No sweeps yet: submit one with <code>ablate submit SPEC --server URL</code>.</p>"
    )
    running = any(s["status"] in ("queued", "running") for s in sweeps)
    return page("ablate: sweeps", f"<h1>ablate: sweeps</h1>{table}", refresh_s=10 if running else None)


def sweep_page(sweep: Mapping[str, Any], trials: Sequence[Mapping[str, Any]], curves: Mapping[str, list[tuple[int, float]]], objective: str | None) -> str:
    """Return one sweep's page: its trials table and the objective curves with collapse markers.

    Args:
        sweep: The sweep (as the API returns it).
        trials: Its trials (as the API returns them).
        curves: Trial id -> (step, objective) points.
        objective: The metric plotted (None when no trial logged one yet).
    """
    sid = escape(sweep["id"])
    head = (
        f'<p><a href="/dashboard">all sweeps</a></p><h1 id="sweep-id">{sid}</h1>'
        f'<p>status: <b class="status-{escape(sweep["status"])}" id="sweep-status">{escape(sweep["status"])}</b>; '
        f"{sweep['n_trials']} trials; submitted {_time(sweep['submitted'])}"
        + (f"; error: {escape(sweep['error'])}" if sweep.get("error") else "")
        + f' &middot; <a href="/sweeps/{sid}/report">report</a></p>'
    )
    colors = {t["id"]: PALETTE[i % len(PALETTE)] for i, t in enumerate(trials)}
    chart = _chart(trials, curves, objective, colors)
    rows = []
    for t in trials:
        best = "" if t["best_score"] is None else f"{t['best_score']:.4g} @ {t['best_step']}"
        stop = "" if not t["stop_reason"] else f"{t['stop_reason']} @ {t['stop_step']}"
        rows.append(
            f'<tr class="trial" data-trial="{escape(t["id"])}"><td><i style="color:{colors[t["id"]]}">&#9632;</i> '
            f'{escape(t["name"])}</td><td>{t["seed"]}</td><td class="status-{escape(t["status"])}">{escape(t["status"])}</td>'
            f'<td>{"" if t["step"] is None else t["step"]}</td><td>{best}</td>'
            f'<td>{"" if t["collapse_step"] is None else t["collapse_step"]}</td><td>{escape(stop)}</td>'
            f'<td>{escape(t.get("why") or "")}</td></tr>'
        )
    table = (
        '<table id="trials"><tr><th>trial</th><th>seed</th><th>status</th><th>step</th><th>best</th>'
        f"<th>collapse onset</th><th>stop</th><th>why</th></tr>{''.join(rows)}</table>"
    )
    running = sweep["status"] in ("queued", "running")
    return page(f"ablate: {sweep['id']}", head + chart + table, refresh_s=5 if running else None)


def _chart(
    trials: Sequence[Mapping[str, Any]], curves: Mapping[str, list[tuple[int, float]]], objective: str | None, colors: Mapping[str, str]
) -> str:
    points = [(s, v) for c in curves.values() for s, v in c if math.isfinite(v)]
    if objective is None or not points:
        return '<p id="no-curves">No validation scores yet.</p>'
    x_max = max(max(s for s, _ in points), 1)
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(step: float) -> float:
        return PAD_L + plot_w * step / x_max

    def y(value: float) -> float:
        return PAD_T + plot_h * (1 - (value - lo) / (hi - lo))

    parts = [
        f'<svg id="curves" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>',
    ]
    for i in range(5):
        value = lo + (hi - lo) * i / 4
        parts.append(f'<text x="{PAD_L - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>')
        step = x_max * i / 4
        parts.append(f'<text x="{x(step):.1f}" y="{HEIGHT - PAD_B + 16}" text-anchor="middle">{step:.0f}</text>')
    parts.append(f'<text x="{PAD_L + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">training step</text>')
    for t in trials:
        curve = [(s, v) for s, v in curves.get(t["id"], []) if math.isfinite(v)]
        if not curve:
            continue
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in curve)
        parts.append(
            f'<polyline class="curve" data-trial="{escape(t["id"])}" fill="none" stroke="{colors[t["id"]]}" '
            f'stroke-width="1.6" points="{path}"><title>{escape(t["name"])}</title></polyline>'
        )
        onset = t.get("collapse_step")
        if onset is not None:
            at = min(curve, key=lambda p: abs(p[0] - onset))
            cx, cy = x(onset), y(at[1])
            parts.append(
                f'<path class="collapse-marker" data-trial="{escape(t["id"])}" d="M{cx - 5:.1f},{cy - 5:.1f} L{cx + 5:.1f},{cy + 5:.1f} '
                f'M{cx - 5:.1f},{cy + 5:.1f} L{cx + 5:.1f},{cy - 5:.1f}" stroke="{colors[t["id"]]}" stroke-width="2.5">'
                f"<title>{escape(t['name'])}: collapse onset at step {onset}</title></path>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{colors[t["id"]]}"></i>{escape(t["name"])}</span>' for t in trials if curves.get(t["id"])
    )
    return f'<h2>{escape(objective)}</h2>{"".join(parts)}<p class="legend">{legend} &nbsp;&times; collapse onset</p>'


def _time(value: float | None) -> str:
    return "" if value is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
