"""The report's figures (matplotlib, Agg): validation curves as small multiples, entropy and length, the effects as
interval plots, survival curves with their bands.

Each function returns a figure, or None when there is nothing to draw; `render` turns one into PNG bytes (for
report.md) and SVG text (inlined in report.html). The artists a reader groups by carry SVG ids, and `render` adds
data attributes to them, so that a browser test can count what was drawn: `val-panel-<i>` (one per configuration,
`data-config`), `val-seed-<i>-<j>` (`data-run`), `val-mean-<i>`, `val-onset-<i>-<j>`; `effects-<k>-<measure>`,
`interval-<k>-<measure>-<l>` (`data-factor`, `data-level`, `data-low`, `data-high`), `zero-<k>-<measure>`;
`km-<k>-<l>` and `km-band-<k>-<l>`.
"""

from __future__ import annotations

import html
import io
import math
import re
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from orchestrator.history import History, series  # noqa: E402
from orchestrator.report._build import Report  # noqa: E402
from orchestrator.report._curves import mean_curve  # noqa: E402
from orchestrator.report._colours import OKABE_ITO, config_colours, config_label  # noqa: E402
from orchestrator.report._effects import FactorEffects  # noqa: E402
from orchestrator.report._plot_effects import effect_intervals  # noqa: E402
from orchestrator.report._plot_tags import tag, tags  # noqa: E402
from orchestrator.report._summary import SIGNALS, RunInput, RunSummary  # noqa: E402

__all__ = ["effect_intervals", "figures", "render", "signal_curves", "survival_curves", "validation_curves"]

_DPI = 90
_N_COLUMNS = 3

_SVG_PROLOG = re.compile(r"\A.*?(?=<svg)", re.S)
_TAGGED_GROUP = re.compile(r'<g id="([^"]+)"')


def figures(report: Report) -> dict[str, Figure]:
    """Return every figure that has something to show, by file stem."""
    made = {
        "validation": validation_curves(report),
        "effects": effect_intervals(report),
        "survival": survival_curves(report),
        "signals": signal_curves(report),
    }
    return {name: figure for name, figure in made.items() if figure is not None}


def render(figure: Figure) -> tuple[bytes, str]:
    """Return the figure as PNG bytes and as an SVG element (text kept as text, tagged groups with their data
    attributes), and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    text = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        figure.savefig(text, format="svg", bbox_inches="tight")
    data = tags(figure)
    plt.close(figure)

    def add_data(match: re.Match[str]) -> str:
        attrs = data.get(match.group(1), {})
        return match.group(0) + "".join(f' data-{key}="{html.escape(value)}"' for key, value in attrs.items())

    svg = _SVG_PROLOG.sub("", text.getvalue(), count=1)
    return buffer.getvalue(), _TAGGED_GROUP.sub(add_data, svg)


# --- configurations ---------------------------------------------------------------------------------------------------


def _run_label(summary: RunSummary, any_levels: bool) -> str:
    """Return the configuration a run belongs to: its levels, or one group for runs without levels."""
    if summary.levels:
        return config_label(summary.levels)
    return "runs without factor levels" if any_levels else "all runs"


def _groups(report: Report) -> dict[str, list[int]]:
    """Return configuration name -> the indices of its runs, in the report's order of configurations."""
    any_levels = any(s.levels for s in report.summaries)
    labels = [_run_label(s, any_levels) for s in report.summaries]
    order = config_colours(labels)
    return {label: [i for i, other in enumerate(labels) if other == label] for label in order}


def _short_title(label: str, levels: Mapping[str, str], baseline: Mapping[str, str]) -> str:
    """Return the factors a configuration changes from the baseline (`kl=0.1`), `baseline`, or its full name."""
    # No baseline (no factors, or runs without levels): the full name.
    if not baseline or not levels or set(levels) != set(baseline):
        return textwrap.fill(label, 42)
    changed = {f: level for f, level in levels.items() if baseline[f] != level}
    return "baseline" if not changed else textwrap.fill(config_label(changed), 42)


# --- validation curves --------------------------------------------------------------------------------------------


def _draw_panel(ax: plt.Axes, i: int, runs: Sequence[tuple[RunInput, RunSummary]], colour: str) -> list[tuple[int, float]]:
    """Draw one configuration's seeds (thin), their mean (bold) and onsets (x); return the mean curve."""
    curves = []
    for j, (run, summary) in enumerate(runs):
        points = series(run.history, summary.objective, finite=True) if summary.objective else []
        if not points:
            continue
        curves.append(points)
        steps, values = zip(*points)
        (line,) = ax.plot(steps, values, color=colour, lw=0.9, alpha=0.55)
        tag(line, f"val-seed-{i}-{j}", run=summary.run)
        if summary.collapse is not None:
            at = [value for step, value in points if step >= summary.collapse.step]
            (mark,) = ax.plot([summary.collapse.step], [at[0] if at else values[-1]], ls="none", marker="x", ms=8, mew=2, color=colour)
            tag(mark, f"val-onset-{i}-{j}", run=summary.run)
    # One run: its line is the mean.
    if len(curves) < 2:
        return curves[0] if curves else []
    full, partial = mean_curve(curves)
    if partial:
        (dotted,) = ax.plot(*zip(*partial), color=colour, lw=2.2, ls=":")
        tag(dotted, f"val-mean-partial-{i}")
    if full:
        (mean,) = ax.plot(*zip(*full), color=colour, lw=2.4)
        tag(mean, f"val-mean-{i}", runs=str(len(curves)))
    return full + partial[1:]


def validation_curves(report: Report) -> Figure | None:
    """Return one panel per configuration: its seeds as thin lines in its colour, their mean bold, an x at each
    collapse onset, and the baseline's mean in grey for reference."""
    # No run logged its objective: no figure.
    if not any(s.objective and series(r.history, s.objective, finite=True) for r, s in zip(report.runs, report.summaries)):
        return None
    groups = _groups(report)
    colours = config_colours(groups)
    n_rows = math.ceil(len(groups) / _N_COLUMNS)
    n_cols = min(len(groups), _N_COLUMNS)
    figure, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.8 * n_cols, 2.5 * n_rows + 0.7), sharex=True, sharey=True, squeeze=False
    )
    baseline = dict(report.effects.baseline)
    base_label = config_label(baseline) if baseline else None
    means = {}
    for i, (label, members) in enumerate(groups.items()):
        ax = axes.flat[i]
        runs = [(report.runs[k], report.summaries[k]) for k in members]
        means[label] = _draw_panel(ax, i, runs, colours[label])
        n_collapsed = sum(s.collapsed for _, s in runs)
        title = _short_title(label, runs[0][1].levels, baseline)
        ax.set_title(f"{title}  ({n_collapsed}/{len(runs)} collapsed)", fontsize=9, color=colours[label])
        tag(ax, f"val-panel-{i}", config=label, runs=",".join(s.run for _, s in runs), colour=colours[label])
        ax.grid(alpha=0.3)
    for i, label in enumerate(groups):
        reference = means.get(base_label) if base_label is not None else None
        if label != base_label and reference:
            (line,) = axes.flat[i].plot(*zip(*reference), color="#888888", lw=1.0, ls="--", zorder=0)
            tag(line, f"val-baseline-{i}")
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    objectives = report.objectives
    for row in axes:
        name = textwrap.fill(objectives[0], 30, break_on_hyphens=False) if len(objectives) == 1 else "objective"
        row[0].set_ylabel(name, fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    figure.suptitle(
        "Validation score per configuration: seeds thin, their mean bold (dotted once a seed has stopped), "
        "x = collapse onset" + ("; grey dashed: the baseline's mean" if base_label in means else ""),
        fontsize=9,
    )
    figure.tight_layout()
    return figure


# --- entropy and length -----------------------------------------------------------------------------------------------


def _signal_metric(history: History, signal: str) -> str | None:
    logged = {name for point in history for name in point.metrics}
    return next((name for name in SIGNALS[signal] if name in logged), None)


def _draw_runs(ax: plt.Axes, report: Report, metrics: Mapping[str, str | None], colours: Mapping[str, str]) -> bool:
    """Draw one metric per run coloured by configuration, x at each onset; return True when anything was drawn."""
    any_levels = any(s.levels for s in report.summaries)
    seen: set[str] = set()
    drawn = False
    for run, summary in zip(report.runs, report.summaries):
        metric = metrics.get(summary.run)
        points = series(run.history, metric, finite=True) if metric else []
        if not points:
            continue
        label = _run_label(summary, any_levels)
        colour = colours[label]
        steps, values = zip(*points)
        ax.plot(steps, values, color=colour, lw=1.0, alpha=0.75, label=None if label in seen else label)
        seen.add(label)
        drawn = True
        if summary.collapse is not None:
            at = [value for step, value in points if step >= summary.collapse.step]
            ax.scatter([summary.collapse.step], [at[0] if at else values[-1]], marker="x", s=50, color=colour, zorder=3)
    return drawn


def signal_curves(report: Report) -> Figure | None:
    """Return entropy and response length per run, coloured by configuration, with collapse onsets marked."""
    colours = config_colours(_groups(report))
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    any_drawn = False
    for ax, signal, title in zip(axes, ("entropy", "response_length"), ("Entropy", "Response length (mean)")):
        metrics = {s.run: _signal_metric(r.history, signal) for r, s in zip(report.runs, report.summaries)}
        drawn = _draw_runs(ax, report, metrics, colours)
        any_drawn = any_drawn or drawn
        ax.set(xlabel="step", title=title)
        ax.grid(alpha=0.3)
    # Neither signal was logged by any run: no figure.
    if not any_drawn:
        plt.close(figure)
        return None
    axes[0].legend(fontsize=7, loc="best")
    return figure


# --- survival -------------------------------------------------------------------------------------------------------


def _level_colours(report: Report, effect: FactorEffects) -> dict[str, str]:
    """Return level -> colour: the colour of the configuration a level stands for (one factor, or one factor at a
    time around the baseline), else a colour per level."""
    levels = [g.levels[effect.factor] for g in effect.levels]
    effects = report.effects
    if effects.design in ("single", "one_at_a_time"):
        colours = config_colours(g.label for g in effects.configurations)
        names = {level: config_label({f: level if f == effect.factor else effects.baseline[f] for f in effects.factors}) for level in levels}
        if all(name in colours for name in names.values()):
            return {level: colours[name] for level, name in names.items()}
    return {level: OKABE_ITO[i % len(OKABE_ITO)] for i, level in enumerate(levels)}


def survival_curves(report: Report) -> Figure | None:
    """Return, per factor, the Kaplan-Meier curve of steps until collapse for each level with its 95% band."""
    effects = report.effects.by_factor
    # No factors: one curve over all runs would say nothing about a factor.
    if not effects:
        return None
    n_cols = min(len(effects), 2)
    n_rows = math.ceil(len(effects) / n_cols)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(5.4 * n_cols, 3.3 * n_rows + 0.5), squeeze=False, sharey=True)
    for k, (ax, effect) in enumerate(zip(axes.flat, effects)):
        colours = _level_colours(report, effect)
        for m, group in enumerate(effect.levels):
            level, curve = group.levels[effect.factor], group.survival
            colour = colours[level]
            if curve.low and curve.high:
                band = ax.fill_between(curve.steps, curve.low, curve.high, step="post", color=colour, alpha=0.13, lw=0)
                tag(band, f"km-band-{k}-{m}", factor=effect.factor, level=level)
            (line,) = ax.step(curve.steps, curve.survival, where="post", color=colour, lw=1.8, label=f"{level} ({group.n_collapsed}/{group.n_runs})")
            tag(line, f"km-{k}-{m}", factor=effect.factor, level=level)
        ax.set(xlabel="step", ylim=(-0.02, 1.05))
        p = effect.logrank.p_value
        ax.set_title(f"{effect.factor}" + (f" (log-rank p={p:.2g})" if p is not None else ""), fontsize=9)
        ax.legend(fontsize=7, loc="lower left", title=f"{effect.factor} (collapsed/runs)", title_fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(effects):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("fraction not collapsed")
    figure.suptitle("Kaplan-Meier curves of steps until collapse, shaded: pointwise 95% band", fontsize=9)
    figure.tight_layout()
    return figure
