"""The dashboard: server-rendered HTML pages with inline SVG charts (no JavaScript library, no build step).

`sweeps_page` lists the sweeps. `sweep_page` shows one sweep as its report groups it: the effects of the runs that
have ended so far (each level against the baseline, with intervals and "cannot tell apart yet"), the objective as
one panel per configuration (seeds thin in the configuration's colour, their mean bold: `orchestrator.service.
_charts`), and the trials grouped by configuration. `trial_page` shows one trial's objective and training signals
with its best step, onset and stop marked, and the collapse rule's evidence. Colours are the report's
(`orchestrator.report.config_colours`: Okabe-Ito, one per configuration). Pages of a running sweep fetch themselves
every 5 s and swap their `#live` part in place (a dozen lines of plain JavaScript), without a full reload.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from orchestrator.service._charts import SeriesGroup, config_panels, signal_chart

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;font-size:.9rem;vertical-align:top}
th{background:#f4f4f4}
.status-completed{color:#2a7}.status-failed{color:#c33}.status-cancelled{color:#888}
.status-running{color:#17c}.status-stopped{color:#c70}
svg text{font-size:11px;fill:#444}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:middle}
.note{color:#555;font-size:.85rem}
.untold{color:#a05a00;font-style:italic}
tr.config-head th{background:#fafafa;font-weight:600}
.panel-title{font-size:12px;font-weight:600}
.signals{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem}
.signal-box h3{font-size:.95rem;margin:.6rem 0 .2rem}
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
    body = f'<div id="live" data-running="{int(running)}"><h1>ablate: sweeps</h1>{table}</div>'
    return page("ablate: sweeps", body + (_LIVE_SCRIPT if running else ""))


def sweep_page(
    sweep: Mapping[str, Any],
    trials: Sequence[Mapping[str, Any]],
    curves: Mapping[str, list[tuple[int, float]]],
    objective: str | None,
    *,
    effects: str = "",
    baseline_levels: Mapping[str, str] | None = None,
) -> str:
    """Return one sweep's page: the effects so far, the objective per configuration, and the trials.

    Args:
        sweep: The sweep (as the API returns it).
        trials: Its trials (as the API returns them).
        curves: Trial id -> (step, objective) points.
        objective: The metric plotted (None when no trial logged one yet).
        effects: The live effects (`orchestrator.service._live.effects_html`).
        baseline_levels: Factor -> the baseline's level: its mean is drawn in the other panels for reference, and
            each panel is titled by what differs from it.
    """
    from orchestrator.report import config_colours, config_label

    sid = escape(sweep["id"])
    running = sweep["status"] in ("queued", "running")
    head = (
        f'<p><a href="/dashboard">all sweeps</a></p><h1 id="sweep-id">{sid}</h1>'
        f'<p>status: <b class="status-{escape(sweep["status"])}" id="sweep-status">{escape(sweep["status"])}</b>; '
        f"{sweep['n_trials']} trials; submitted {_time(sweep['submitted'])}"
        + (f"; error: {escape(sweep['error'])}" if sweep.get("error") else "")
        + f' &middot; <a href="/sweeps/{sid}/report">report</a></p>'
    )
    groups = trial_groups(trials)
    colours = config_colours(label for label in groups if label is not None)
    series = [
        SeriesGroup(
            label,
            colours[label],
            tuple((t["id"], t["name"], t.get("collapse_step"), curves.get(t["id"], [])) for t in members),
            _panel_title(members[0].get("levels") or {}, baseline_levels),
        )
        for label, members in groups.items()
        if label is not None
    ]
    baseline = config_label(baseline_levels) if baseline_levels else None
    chart = config_panels(series, objective, baseline if baseline in groups else None)
    table = _trials_table(groups, colours)
    live = (
        f'<div id="live" data-running="{int(running)}">{head}<h2>Which factor prevents collapse, so far</h2>{effects}'
        f"{chart}{table}</div>"
    )
    return page(f"ablate: {sweep['id']}", live + (_LIVE_SCRIPT if running else ""))


def _panel_title(levels: Mapping[str, str], baseline: Mapping[str, str] | None) -> str:
    """Return what a configuration changes from the baseline (`kl=0.01`), `baseline`, or "" (no baseline)."""
    from orchestrator.report import config_label

    if not baseline or not levels or set(levels) != set(baseline):
        return ""
    changed = {f: level for f, level in levels.items() if baseline[f] != level}
    return config_label(changed) if changed else "baseline"


def trial_groups(trials: Sequence[Mapping[str, Any]]) -> dict[str | None, list[Mapping[str, Any]]]:
    """Return configuration label -> its trials (seeds), in the report's order; rescue branches under None."""
    from orchestrator.report import config_colours, config_label

    found: dict[str | None, list[Mapping[str, Any]]] = {}
    for t in trials:
        label = None if t.get("parent") else config_label(t.get("levels") or {})
        found.setdefault(label, []).append(t)
    order = config_colours(label for label in found if label is not None)
    return {label: found[label] for label in [*order, *([None] if None in found else [])]}


def _trials_table(groups: Mapping[str | None, Sequence[Mapping[str, Any]]], colours: Mapping[str, str]) -> str:
    """Return the trials table, one block of rows per configuration (rescue branches last)."""
    rows = []
    for label, members in groups.items():
        colour = colours.get(label, "#888888") if label is not None else "#888888"
        title = escape(label) if label is not None else "rescue branches"
        rows.append(f'<tr class="config-head"><th colspan="8"><i class="swatch" style="background:{colour}"></i> {title}</th></tr>')
        for t in members:
            best = "" if t["best_score"] is None else f"{t['best_score']:.4g} @ {t['best_step']}"
            stop = "" if not t["stop_reason"] else f"{t['stop_reason']} @ {t['stop_step']}"
            link = f'<a href="/dashboard/trials/{quote(t["id"], safe=":")}">{escape(t["name"])}</a>'
            rows.append(
                f'<tr class="trial" data-trial="{escape(t["id"])}" data-config="{escape(label or "")}"><td>'
                f'<i class="swatch" style="background:{colour}"></i> {link}</td><td>{t["seed"]}</td>'
                f'<td class="status-{escape(t["status"])}">{escape(t["status"])}</td>'
                f'<td>{"" if t["step"] is None else t["step"]}</td><td>{best}</td>'
                f'<td>{"" if t["collapse_step"] is None else t["collapse_step"]}</td><td>{escape(stop)}</td>'
                f'<td>{escape(t.get("why") or "")}</td></tr>'
            )
    return (
        '<h2>Trials</h2><table id="trials"><tr><th>trial</th><th>seed</th><th>status</th><th>step</th><th>best</th>'
        f"<th>collapse onset</th><th>stop</th><th>why</th></tr>{''.join(rows)}</table>"
    )


def trial_page(
    sweep: Mapping[str, Any],
    trial: Mapping[str, Any],
    signals: Sequence[tuple[str, str, list[tuple[int, float]]]],
    evidence: Mapping[str, Any] | None,
    colour: str,
) -> str:
    """Return one trial's page: its objective and training signals, with its best step, onset and stop marked, and
    the collapse rule's evidence.

    Args:
        sweep: Its sweep (as the API returns it).
        trial: The trial (as the API returns it).
        signals: (key, title, points) per signal drawn: the objective, entropy, response length, grad norm.
        evidence: The evidence the rule recorded when it stopped the trial (None when no rule did).
        colour: Its configuration's colour.
    """
    from orchestrator.report import config_label

    running = trial["status"] not in ("completed", "stopped", "failed", "cancelled")
    marks = {"best": trial.get("best_step"), "onset": trial.get("collapse_step"), "stop": trial.get("stop_step")}
    config = config_label(trial.get("levels") or {})
    head = (
        f'<p><a href="/dashboard/sweeps/{escape(sweep["id"])}">{escape(sweep["id"])}</a></p>'
        f'<h1 id="trial-name">{escape(trial["name"])}</h1><p><i class="swatch" style="background:{colour}"></i> '
        f'{escape(config)}; seed {trial["seed"]}; status <b class="status-{escape(trial["status"])}" id="trial-status">'
        f'{escape(trial["status"])}</b>; step {"" if trial["step"] is None else trial["step"]}; best '
        + ("-" if trial["best_score"] is None else f"{trial['best_score']:.4g} @ {trial['best_step']}")
        + "</p>"
    )
    charts = "".join(signal_chart(key, title, points, marks, colour) for key, title, points in signals)
    legend = (
        '<p class="note">Dashed lines: <span style="color:#009E73">best step</span>, '
        '<span style="color:#D55E00">collapse onset</span>, stop.</p>'
    )
    body = f'<div id="live" data-running="{int(running)}">{head}<div class="signals">{charts}</div>{legend}{_evidence(trial, evidence)}</div>'
    return page(f"ablate: {trial['name']}", body + (_LIVE_SCRIPT if running else ""))


def _evidence(trial: Mapping[str, Any], evidence: Mapping[str, Any] | None) -> str:
    """Return how the trial ended, and the rule's sentence and evidence when a rule stopped it."""
    stop = trial.get("stop_reason")
    parts = ["<h2>How it ended</h2>"]
    if not stop:
        parts.append("<p>It has not ended yet.</p>")
    else:
        parts.append(f'<p id="stop-reason">{escape(stop)} at step {trial.get("stop_step")}</p>')
    if evidence:
        parts.append(f'<p id="rule-reason"><b>{escape(str(evidence.get("reason", "")))}</b></p>')
        rows = "".join(
            f"<tr><td>{escape(str(k))}</td><td>{escape(_value(v))}</td></tr>" for k, v in evidence.items() if k != "reason"
        )
        parts.append(f'<table id="evidence"><tr><th>evidence</th><th>value</th></tr>{rows}</table>')
    warnings = trial.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{escape(str(w.get('rule')))} at step {w.get('step')}</li>" for w in warnings)
        parts.append(f"<h3>Leading signs (warnings, never stops)</h3><ul id=\"warnings\">{items}</ul>")
    return "".join(parts)


def _value(value: Any) -> str:
    """Return an evidence value as short text (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    return str(value)


# Refresh without a full reload: every 5 s the page fetches itself and swaps `#live` in place (scroll position and
# open <details> kept), until the sweep or trial has ended; `data-refreshes` on <body> counts the swaps.
_LIVE_SCRIPT = """<script>
(function(){
  let n = 0;
  async function tick(){
    try {
      const answer = await fetch(location.href, {credentials: 'same-origin', cache: 'no-store'});
      if (!answer.ok) return setTimeout(tick, 5000);
      const doc = new DOMParser().parseFromString(await answer.text(), 'text/html');
      const fresh = doc.getElementById('live'), old = document.getElementById('live');
      if (!fresh || !old) return setTimeout(tick, 5000);
      const open = [...old.querySelectorAll('details[open]')].map(d => d.id);
      old.replaceWith(fresh);
      open.forEach(id => { const d = document.getElementById(id); if (d) d.open = true; });
      document.body.dataset.refreshes = String(++n);
      if (fresh.dataset.running === '1') setTimeout(tick, 5000);
    } catch (e) { setTimeout(tick, 5000); }
  }
  setTimeout(tick, 5000);
})();
</script>"""


def _time(value: float | None) -> str:
    return "" if value is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
