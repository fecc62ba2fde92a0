"""The report's figures (matplotlib, Agg): validation curves, entropy and length, effect bars, survival curves.

Each function returns a figure, or None when there is nothing to draw; `render_png` turns one into PNG bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from orchestrator.history import History, series  # noqa: E402
from orchestrator.report._build import Report  # noqa: E402
from orchestrator.report._effects import GroupStats  # noqa: E402
from orchestrator.report._stats import Interval  # noqa: E402
from orchestrator.report._summary import SIGNALS, RunSummary  # noqa: E402

__all__ = ["effect_bars", "figures", "render_png", "signal_curves", "survival_curves", "validation_curves"]

_DPI = 90


def figures(report: Report) -> dict[str, Figure]:
    """Return every figure that has something to show, by file stem."""
    made = {
        "validation": validation_curves(report),
        "signals": signal_curves(report),
        "effects": effect_bars(report),
        "survival": survival_curves(report),
    }
    return {name: figure for name, figure in made.items() if figure is not None}


def render_png(figure: Figure) -> bytes:
    """Return the figure as PNG bytes, and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _colours(report: Report) -> dict[str, tuple[str, object]]:
    """Return run -> (configuration label, colour): runs of one configuration share a colour."""
    labels = {s.run: _config_label(s) for s in report.summaries}
    palette = plt.get_cmap("tab10" if len(set(labels.values())) <= 10 else "tab20")
    order = list(dict.fromkeys(labels.values()))
    return {run: (label, palette(order.index(label) % palette.N)) for run, label in labels.items()}


def _config_label(summary: RunSummary) -> str:
    return ", ".join(f"{f}={level}" for f, level in summary.levels.items()) or summary.run


def _draw_runs(ax: plt.Axes, report: Report, metrics: Mapping[str, str | None], mark_collapse: bool) -> bool:
    """Draw one metric per run (run -> metric) coloured by configuration; return True when anything was drawn."""
    colours = _colours(report)
    seen: set[str] = set()
    drawn = False
    for run, summary in zip(report.runs, report.summaries):
        metric = metrics.get(summary.run)
        points = series(run.history, metric, finite=True) if metric else []
        if not points:
            continue
        label, colour = colours[summary.run]
        steps, values = zip(*points)
        ax.plot(steps, values, color=colour, lw=1.2, alpha=0.8, label=None if label in seen else label)
        seen.add(label)
        drawn = True
        if mark_collapse and summary.collapse is not None:
            _mark_onset(ax, points, summary.collapse.step, colour)
    return drawn


def _mark_onset(ax: plt.Axes, points: Sequence[tuple[int, float]], onset: int, colour: object) -> None:
    at = [value for step, value in points if step >= onset]
    ax.scatter([onset], [at[0] if at else points[-1][1]], marker="x", s=60, color=colour, zorder=3)


def validation_curves(report: Report) -> Figure | None:
    """Return the objective of every run against the step, coloured by level, with an x at each collapse onset."""
    figure, ax = plt.subplots(figsize=(8, 4.2))
    drawn = _draw_runs(ax, report, {s.run: s.objective for s in report.summaries}, mark_collapse=True)
    # No run logged its objective: no figure.
    if not drawn:
        plt.close(figure)
        return None
    objectives = report.objectives
    ax.set(xlabel="step", ylabel=objectives[0] if len(objectives) == 1 else "objective (each run's own)")
    ax.set_title("Validation score per run (x: collapse onset)")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return figure


def _signal_metric(history: History, signal: str) -> str | None:
    logged = {name for point in history for name in point.metrics}
    return next((name for name in SIGNALS[signal] if name in logged), None)


def signal_curves(report: Report) -> Figure | None:
    """Return entropy and response length per run, coloured by level, with collapse onsets marked."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    any_drawn = False
    for ax, signal, title in zip(axes, ("entropy", "response_length"), ("Entropy", "Response length (mean)")):
        metrics = {s.run: _signal_metric(r.history, signal) for r, s in zip(report.runs, report.summaries)}
        drawn = _draw_runs(ax, report, metrics, mark_collapse=True)
        any_drawn = any_drawn or drawn
        ax.set(xlabel="step", title=title)
        ax.grid(alpha=0.3)
    # Neither signal was logged by any run: no figure.
    if not any_drawn:
        plt.close(figure)
        return None
    axes[0].legend(fontsize=7, loc="best")
    return figure


def _bar(ax: plt.Axes, groups: Sequence[GroupStats], factor: str, value: str, scale: float) -> None:
    intervals: list[Interval] = [getattr(g, value) for g in groups]
    names = [g.levels[factor] for g in groups]
    heights = [i.estimate * scale if math.isfinite(i.estimate) else 0.0 for i in intervals]
    # A BCa interval need not contain the estimate: never draw a negative error bar.
    lows = [max(0.0, (i.estimate - i.low) * scale) if i.has_bounds else 0.0 for i in intervals]
    highs = [max(0.0, (i.high - i.estimate) * scale) if i.has_bounds else 0.0 for i in intervals]
    ax.bar(names, heights, yerr=[lows, highs], capsize=5, color="#7aa6c2", edgecolor="#2b5d7d")
    ax.set_xlabel(factor)
    ax.grid(axis="y", alpha=0.3)


def effect_bars(report: Report) -> Figure | None:
    """Return, per factor, each level's mean best score and collapse rate with their 95% intervals."""
    effects = report.effects.by_factor
    # No factors: no bars.
    if not effects:
        return None
    figure, axes = plt.subplots(len(effects), 2, figsize=(10, 3.2 * len(effects)), squeeze=False)
    for row, effect in zip(axes, effects):
        _bar(row[0], effect.levels, effect.factor, "best_score", 1.0)
        row[0].set_title(f"{effect.factor}: mean best score, 95% CI")
        _bar(row[1], effect.levels, effect.factor, "collapse_rate", 100.0)
        row[1].set_title(f"{effect.factor}: collapse rate (%), 95% CI")
        row[1].set_ylim(0, 105)
    figure.tight_layout()
    return figure


def survival_curves(report: Report) -> Figure | None:
    """Return, per factor, the Kaplan-Meier curve of steps until collapse for each level."""
    effects = report.effects.by_factor
    # No factors: one curve over all runs would say nothing about a factor.
    if not effects:
        return None
    figure, axes = plt.subplots(1, len(effects), figsize=(5.5 * len(effects), 3.8), squeeze=False)
    for ax, effect in zip(axes[0], effects):
        for group in effect.levels:
            curve = group.survival
            ax.step(curve.steps, curve.survival, where="post", label=f"{effect.factor}={group.levels[effect.factor]}")
        ax.set(xlabel="step", ylabel="fraction not collapsed", ylim=(-0.02, 1.05))
        p = effect.logrank.p_value
        ax.set_title(f"{effect.factor}: survival" + (f" (log-rank p={p:.3g})" if p is not None else ""))
        ax.legend(fontsize=7, loc="lower left")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure
