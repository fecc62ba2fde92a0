"""The effects of a sweep computed so far, for the dashboard: the report's estimates on the trials that have ended.

`live_effects` reads a sweep folder as the report does (`orchestrator.report.from_store`), keeps the runs that have
ended, and judges them with the report's own `build_report` (the same summaries, effects and intervals); the
baseline is fixed from the spec, so that it does not move as trials end. `effects_html` writes the table: each
level against the baseline, with the differences' 95% intervals and, where an interval includes 0, the report's
"cannot tell apart" wording with "yet" (more runs may still tell them apart).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

CANNOT_TELL = "cannot tell apart yet"


@dataclass(frozen=True)
class LiveEffects:
    """The effects of the runs that have ended so far.

    Attributes:
        n_ended: How many of the sweep's runs have ended (rescue branches are not runs).
        n_runs: How many runs the sweep has.
        effects: The report's effects of the ended runs (`orchestrator.report.Effects`); None before any ended.
        baseline: Factor -> the baseline level, from the spec.
        levels: Factor -> every level of the sweep (ended or not), in the report's order.
        mode: `max` or `min`.
    """

    n_ended: int
    n_runs: int
    effects: Any
    baseline: Mapping[str, str]
    levels: Mapping[str, list[str]]
    mode: str


def live_effects(sweep_dir: Path) -> LiveEffects:
    """Return the report's effects of the runs of a sweep folder that have ended.

    Raises:
        AblateError: If the folder holds no sweep store (StoreError), or no sweep.
    """
    from orchestrator.collapse import CollapseConfig
    from orchestrator.report import baseline_levels, build_report, from_store, level_order

    stored = from_store(sweep_dir)
    spec = stored.spec
    factors = list(dict.fromkeys(f for run in stored.runs for f in run.levels))
    levels = {f: level_order([run.levels[f] for run in stored.runs if f in run.levels]) for f in factors}
    wanted = baseline_levels(spec) if spec.design.type == "one_at_a_time" and spec.search is None else {}
    baseline = {f: wanted.get(f, levels[f][0]) for f in factors}
    ended = [run for run in stored.runs if run.stop_reason is not None]
    effects = None
    if ended:
        seen = {f: {run.levels.get(f) for run in ended} for f in factors}
        # A baseline level no run of has ended cannot anchor a comparison yet (its comparisons are left out below).
        present = {f: level for f, level in baseline.items() if level in seen[f]}
        effects = build_report(
            ended,
            objective=None if spec.objective.metric == "auto" else spec.objective.metric,
            mode=spec.objective.mode,
            config=spec.pruning.collapse or CollapseConfig(),
            eval_sizes=spec.objective.eval_sizes,
            baseline=present,
        ).effects
    return LiveEffects(len(ended), len(stored.runs), effects, baseline, levels, spec.objective.mode)


def _interval(interval: Any, percent: bool = False) -> str:
    """Return e.g. `0.82 [0.61, 1.03]`, `33% [4%, 79%]`, or why there is none."""
    if not math.isfinite(interval.estimate):
        return "no data"
    fmt = (lambda v: f"{v * 100:.0f}%") if percent else (lambda v: f"{v:.3g}")
    if not interval.has_bounds:
        return f"{fmt(interval.estimate)} (no interval)"
    return f"{fmt(interval.estimate)} [{fmt(interval.low)}, {fmt(interval.high)}]"


def _difference(interval: Any, percent: bool = False) -> str:
    """Return a difference with its interval, and the report's wording where the interval includes 0."""
    if not math.isfinite(interval.estimate):
        return "no data"
    fmt = (lambda v: f"{v * 100:+.0f} pts") if percent else (lambda v: f"{v:+.3g}")
    if not interval.has_bounds:
        return f"{fmt(interval.estimate)} (no interval: {CANNOT_TELL})"
    text = f"{fmt(interval.estimate)} [{fmt(interval.low)}, {fmt(interval.high)}]"
    if interval.contains(0.0):
        return f'{text} <span class="untold">{CANNOT_TELL}</span>'
    return text


def effects_html(live: LiveEffects | None, colours: Mapping[str, str], *, error: str | None = None) -> str:
    """Return the live effects: the sentence of how many runs have ended, the effects table and the configurations."""
    if live is None:
        return f'<div id="effects-live"><p class="note">No effects yet{": " + escape(error) if error else ""}.</p></div>'
    head = (
        f'<p id="effects-count" data-ended="{live.n_ended}" data-runs="{live.n_runs}">{live.n_ended} of {live.n_runs} '
        "runs have ended; the estimates below rest on them and change as runs end (running runs are not counted).</p>"
    )
    effects = live.effects
    if effects is None:
        return f'<div id="effects-live">{head}</div>'
    # No factors (a search samples its own values, or a sweep of seeds only): nothing to compare.
    if not live.levels:
        return f'<div id="effects-live">{head}<p class="note">No factors to compare: see the report.</p></div>'
    rows = []
    for factor in live.levels:
        effect = next((e for e in effects.by_factor if e.factor == factor), None)
        groups = {g.levels[factor]: g for g in effect.levels} if effect else {}
        comparisons = {c.level: c for c in effect.comparisons} if effect and effect.baseline == live.baseline[factor] else {}
        base = groups.get(live.baseline[factor])
        for level in live.levels[factor]:
            rows.append(_effect_row(factor, level, live.baseline[factor], groups.get(level), base, comparisons.get(level)))
    table = (
        '<table id="effects"><tr><th>factor</th><th>level</th><th>runs ended</th><th>collapse rate [95%]</th>'
        "<th>vs baseline</th><th>mean best score [95%]</th><th>vs baseline</th></tr>" + "".join(rows) + "</table>"
    )
    best = (
        f'<p id="best-so-far">Best configuration so far: <b>{escape(effects.best.label)}</b> (lowest collapse rate, '
        f"then best mean best score).</p>"
        if effects.best is not None
        else ""
    )
    warnings = "".join(f"<li>{escape(w)}</li>" for w in effects.warnings)
    details = (
        f'<details id="effects-warnings"><summary>Where the data cannot tell levels apart yet ({len(effects.warnings)})'
        f"</summary><ul>{warnings}</ul></details>"
        if warnings
        else ""
    )
    return f'<div id="effects-live">{head}{best}{table}{details}{_configurations(effects, colours)}</div>'


def _effect_row(factor: str, level: str, baseline: str, group: Any, base: Any, comparison: Any) -> str:
    """Return one level's row: its runs, rate and score, and its differences from the baseline."""
    cells = [escape(factor), escape(level) + (" (baseline)" if level == baseline else "")]
    if group is None:
        cells += ["0", "no run has ended yet", "", "", ""]
    else:
        cells += [
            f"{group.n_runs}",
            f"{group.n_collapsed}/{group.n_rate}: {_interval(group.collapse_rate, percent=True)}",
            "",
            _interval(group.best_score),
            "",
        ]
        if level != baseline:
            if comparison is not None:
                cells[4] = _difference(comparison.collapse_rate_diff, percent=True)
                cells[6] = _difference(comparison.best_score_diff)
            else:
                cells[4] = cells[6] = "no baseline run has ended yet" if base is None else "not comparable yet"
    tds = "".join(f"<td>{c}</td>" for c in cells)
    return f'<tr class="effect" data-factor="{escape(factor)}" data-level="{escape(level)}">{tds}</tr>'


def _configurations(effects: Any, colours: Mapping[str, str]) -> str:
    """Return the table of configurations (the ended runs of each), in the report's order, with their colours."""
    rows = []
    for g in effects.configurations:
        colour = colours.get(g.label, "#888888")
        rows.append(
            f'<tr class="configuration" data-config="{escape(g.label)}"><td><i class="swatch" '
            f'style="background:{colour}"></i> {escape(g.label)}</td><td>{g.n_runs}</td>'
            f"<td>{g.n_collapsed}/{g.n_rate}: {_interval(g.collapse_rate, percent=True)}</td>"
            f"<td>{_interval(g.best_score)}</td></tr>"
        )
    return (
        '<table id="configurations"><tr><th>configuration</th><th>runs ended</th><th>collapse rate [95%]</th>'
        f"<th>mean best score [95%]</th></tr>{''.join(rows)}</table>"
    )
