"""The dashboard's charts: inline SVG written on the server (no JavaScript library, no build step).

`config_panels` draws the objective as the report does: one panel per configuration (a `g.config-group` with its
`data-config`), its seeds as thin lines in the configuration's colour, their mean bold (dotted once a seed has
stopped), a cross at each collapse onset, and the baseline's mean in grey dashes for reference. Every panel shares
one y axis, so that panels compare at a glance. `signal_chart` draws one signal of one trial with its marked steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from orchestrator.report._curves import Curve, mean_curve

PANEL_W, PANEL_H, PAD_L, PAD_R, PAD_T, PAD_B = 300, 190, 46, 10, 30, 30
COLUMNS = 3
SIGNAL_W, SIGNAL_H = 460, 170
BASELINE_GREY = "#777777"


@dataclass(frozen=True)
class SeriesGroup:
    """One configuration's runs, drawn in one panel.

    Attributes:
        label: The configuration's name (`kl=0.01, lr=cos`), as the report writes it.
        colour: Its colour (`#RRGGBB`).
        runs: (trial id, trial name, collapse onset or None, its curve) per seed.
        title: The panel's title (what differs from the baseline); the label when empty.
    """

    label: str
    colour: str
    runs: tuple[tuple[str, str, int | None, Curve], ...]
    title: str = ""


@dataclass(frozen=True)
class _Frame:
    """Maps (step, value) into a box of the SVG."""

    left: float
    top: float
    width: float
    height: float
    x_max: float
    lo: float
    hi: float

    def x(self, step: float) -> float:
        return self.left + self.width * step / self.x_max

    def y(self, value: float) -> float:
        return self.top + self.height * (1 - (value - self.lo) / (self.hi - self.lo))

    def points(self, curve: Curve) -> str:
        return " ".join(f"{self.x(s):.1f},{self.y(v):.1f}" for s, v in curve)

    def axes(self) -> list[str]:
        """Return the box, 3 value ticks and 3 step ticks."""
        parts = [f'<rect x="{self.left}" y="{self.top}" width="{self.width}" height="{self.height}" fill="none" stroke="#bbb"/>']
        for i in range(3):
            value = self.lo + (self.hi - self.lo) * i / 2
            parts.append(f'<text x="{self.left - 4}" y="{self.y(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>')
            step = self.x_max * i / 2
            parts.append(f'<text x="{self.x(step):.1f}" y="{self.top + self.height + 14}" text-anchor="middle">{step:.0f}</text>')
        return parts


def _finite(curve: Curve) -> Curve:
    return [(s, v) for s, v in curve if math.isfinite(v)]


def config_panels(groups: Sequence[SeriesGroup], objective: str | None, baseline: str | None = None) -> str:
    """Return the objective's small multiples: one panel (a `g.config-group`) per configuration with runs.

    Args:
        groups: The configurations, in the order their panels are laid out.
        objective: The metric drawn (None when no trial has logged one yet).
        baseline: The baseline configuration's label: its mean is drawn in grey dashes in the other panels.
    """
    curves = {g.label: [(tid, name, onset, _finite(c)) for tid, name, onset, c in g.runs] for g in groups}
    values = [v for runs in curves.values() for *_, c in runs for _, v in c]
    if objective is None or not values:
        return '<p id="no-curves">No validation scores yet.</p>'
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    x_max = max(max(s for runs in curves.values() for *_, c in runs for s, _ in c), 1)
    shown = [g for g in groups if any(c for *_, c in curves[g.label])]
    means = {g.label: mean_curve([c for *_, c in curves[g.label] if c]) for g in shown}
    reference = means.get(baseline) if baseline is not None else None
    rows = math.ceil(len(shown) / COLUMNS)
    width, height = PANEL_W * min(len(shown), COLUMNS), PANEL_H * rows
    parts = [
        f'<svg id="curves" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for i, group in enumerate(shown):
        left, top = PANEL_W * (i % COLUMNS), PANEL_H * (i // COLUMNS)
        frame = _Frame(left + PAD_L, top + PAD_T, PANEL_W - PAD_L - PAD_R, PANEL_H - PAD_T - PAD_B, x_max, lo, hi)
        ref = reference if group.label != baseline else None
        parts.append(_panel(frame, group, curves[group.label], means[group.label], ref))
    parts.append("</svg>")
    note = (
        "Seeds thin, their mean bold (dotted once a seed has stopped), &times; collapse onset"
        + ("; grey dashes: the baseline's mean" if reference else "")
        + "; x axis: training step."
    )
    return f'<h2>{escape(objective)}, per configuration</h2>{"".join(parts)}<p class="note">{note}</p>'


def _panel(
    frame: _Frame,
    group: SeriesGroup,
    runs: list[tuple[str, str, int | None, Curve]],
    means: tuple[Curve, Curve],
    reference: tuple[Curve, Curve] | None,
) -> str:
    """Return one configuration's panel: its seeds, their mean, its onsets, the baseline's mean."""
    colour, label = group.colour, escape(group.label)
    parts = [f'<g class="config-group" data-config="{label}" data-colour="{colour}">', *frame.axes()]
    parts.append(
        f'<text class="panel-title" x="{frame.left}" y="{frame.top - 8}" fill="{colour}">{escape(group.title or group.label)}'
        f"<title>{label}</title></text>"
    )
    if reference is not None and reference[0]:
        parts.append(
            f'<polyline class="baseline-mean" fill="none" stroke="{BASELINE_GREY}" stroke-width="1.2" '
            f'stroke-dasharray="5 3" points="{frame.points(reference[0])}"/>'
        )
    drawn = [c for *_, c in runs if c]
    for trial_id, name, onset, curve in runs:
        if not curve:
            continue
        parts.append(
            f'<polyline class="seed-curve" data-trial="{escape(trial_id)}" fill="none" stroke="{colour}" '
            f'stroke-width="1" stroke-opacity="0.6" points="{frame.points(curve)}"><title>{escape(name)}</title></polyline>'
        )
        if onset is not None:
            at = min(curve, key=lambda p: abs(p[0] - onset))
            cx, cy = frame.x(onset), frame.y(at[1])
            parts.append(
                f'<path class="collapse-marker" data-trial="{escape(trial_id)}" d="M{cx - 4:.1f},{cy - 4:.1f} '
                f'L{cx + 4:.1f},{cy + 4:.1f} M{cx - 4:.1f},{cy + 4:.1f} L{cx + 4:.1f},{cy - 4:.1f}" stroke="{colour}" '
                f'stroke-width="2"><title>{escape(name)}: collapse onset at step {onset}</title></path>'
            )
    full, partial = means
    # One seed: its line is the mean, drawn bold over it.
    if len(drawn) == 1:
        full, partial = drawn[0], []
    if partial:
        parts.append(
            f'<polyline class="config-mean-partial" fill="none" stroke="{colour}" stroke-width="2.4" '
            f'stroke-dasharray="2 3" points="{frame.points(partial)}"/>'
        )
    if full:
        parts.append(
            f'<polyline class="config-mean" data-runs="{len(drawn)}" fill="none" stroke="{colour}" stroke-width="2.8" '
            f'points="{frame.points(full)}"><title>{label}: mean of {len(drawn)} seed(s)</title></polyline>'
        )
    parts.append("</g>")
    return "".join(parts)


def signal_chart(name: str, title: str, curve: Curve, marks: Mapping[str, int | None], colour: str) -> str:
    """Return one signal of one trial (`svg.signal`) with a vertical line at each marked step (best, onset, stop)."""
    points = _finite(curve)
    if not points:
        return f'<div class="signal-box"><h3>{escape(title)}</h3><p class="note">not logged</p></div>'
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    x_max = max(max(s for s, _ in curve), *(m for m in marks.values() if m is not None), 1)
    frame = _Frame(PAD_L, 10, SIGNAL_W - PAD_L - PAD_R, SIGNAL_H - 10 - PAD_B, x_max, lo, hi)
    parts = [
        f'<svg class="signal" data-signal="{escape(name)}" xmlns="http://www.w3.org/2000/svg" width="{SIGNAL_W}" '
        f'height="{SIGNAL_H}" viewBox="0 0 {SIGNAL_W} {SIGNAL_H}" role="img">',
        *frame.axes(),
    ]
    styles = {"best": "#009E73", "onset": "#D55E00", "stop": "#222222"}
    for mark, step in marks.items():
        if step is None:
            continue
        parts.append(
            f'<line class="mark-{escape(mark)}" x1="{frame.x(step):.1f}" x2="{frame.x(step):.1f}" y1="{frame.top}" '
            f'y2="{frame.top + frame.height}" stroke="{styles.get(mark, "#888")}" stroke-dasharray="4 3">'
            f"<title>{escape(mark)}: step {step}</title></line>"
        )
    parts.append(
        f'<polyline class="signal-curve" fill="none" stroke="{colour}" stroke-width="1.6" points="{frame.points(points)}"/>'
    )
    parts.append("</svg>")
    return f'<div class="signal-box"><h3>{escape(title)}</h3>{"".join(parts)}</div>'
