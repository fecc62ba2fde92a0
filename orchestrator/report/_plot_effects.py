"""The effects figure: per factor, each level's difference from the baseline with its 95% interval and a zero line,
for the mean best score and for the collapse rate (an interval plot, as rliable draws few-seed results)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from orchestrator.report._build import Report  # noqa: E402
from orchestrator.report._colours import config_colours, config_label  # noqa: E402
from orchestrator.report._effects import Effects, FactorEffects  # noqa: E402
from orchestrator.report._plot_tags import tag  # noqa: E402
from orchestrator.report._stats import Interval  # noqa: E402

__all__ = ["effect_intervals"]

_MEASURES = (
    ("score", "best_score_diff", 1.0, "mean best score − baseline's"),
    ("rate", "collapse_rate_diff", 100.0, "collapse rate − baseline's (points)"),
)
_NEUTRAL = "#555555"


def _colour(effects: Effects, effect: FactorEffects, level: str, colours: dict[str, str]) -> str:
    """Return the colour of the configuration a level stands for (one factor at a time), else a neutral grey."""
    # In a grid a level is averaged over the other factors: it is no one configuration.
    if effects.design not in ("single", "one_at_a_time"):
        return _NEUTRAL
    name = config_label({f: level if f == effect.factor else effects.baseline[f] for f in effects.factors})
    return colours.get(name, _NEUTRAL)


def _label(interval: Interval, scale: float) -> str:
    """Return e.g. `+0.10 [+0.03, +0.17]`, `-67 [-94, +6] cannot tell apart`, or why there is no interval."""
    fmt = (lambda v: f"{v * scale:+.0f}") if scale == 100.0 else (lambda v: f"{v:+.3g}")
    # No runs on one side: nothing to show.
    if not math.isfinite(interval.estimate):
        return "no data"
    if not interval.has_bounds:
        return f"{fmt(interval.estimate)} (no interval)"
    text = f"{fmt(interval.estimate)} [{fmt(interval.low)}, {fmt(interval.high)}]"
    return text + ("  cannot tell apart" if interval.contains(0.0) else "")


def _draw_measure(ax: plt.Axes, report: Report, k: int, effect: FactorEffects, measure: tuple[str, str, float, str]) -> None:
    """Draw one factor's differences on one measure: an interval per level, the baseline at 0, the zero line."""
    name, attribute, scale, title = measure
    colours = config_colours(g.label for g in report.effects.configurations)
    levels = [g.levels[effect.factor] for g in effect.levels]
    comparisons = {c.level: c for c in effect.comparisons}
    zero = ax.axvline(0.0, color="#222222", lw=1.0, zorder=1)
    tag(zero, f"zero-{k}-{name}", factor=effect.factor, measure=name)
    for y, level in enumerate(levels):
        colour = _colour(report.effects, effect, level, colours)
        comparison = comparisons.get(level)
        # The baseline: its difference from itself is 0 by definition.
        if comparison is None:
            ax.plot([0.0], [y], ls="none", marker="D", ms=6, mfc="white", mec=colour, mew=1.5, zorder=3)
            ax.annotate("baseline", (0.0, y), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=7, color=_NEUTRAL)
            continue
        interval: Interval = getattr(comparison, attribute)
        if interval.has_bounds:
            (line,) = ax.plot([interval.low * scale, interval.high * scale], [y, y], color=colour, lw=2.2, solid_capstyle="butt", zorder=2)
            tag(
                line, f"interval-{k}-{name}-{y}", factor=effect.factor, level=level, measure=name,
                low=repr(interval.low), high=repr(interval.high), estimate=repr(interval.estimate),
            )  # fmt: skip
        if math.isfinite(interval.estimate):
            called = interval.has_bounds and not interval.contains(0.0)
            ax.plot(
                [interval.estimate * scale], [y], ls="none", marker="o", ms=7, mec=colour, mew=1.5,
                mfc=colour if called else "white", zorder=3,
            )  # fmt: skip
            ax.annotate(
                _label(interval, scale), (interval.estimate * scale, y), xytext=(0, 7), textcoords="offset points",
                ha="center", fontsize=7, color=colour if called else _NEUTRAL,
            )  # fmt: skip
    ax.set_yticks(range(len(levels)), [f"{lv} (baseline)" if lv == effect.baseline else lv for lv in levels], fontsize=8)
    ax.set_ylim(-0.6, len(levels) - 0.2)
    if name == "score":
        ax.set_ylabel(effect.factor)
    ax.set_title(f"{effect.factor}: {title}, 95% CI", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    tag(ax, f"effects-{k}-{name}", factor=effect.factor, measure=name)


def effect_intervals(report: Report) -> Figure | None:
    """Return, per factor, each level's difference from the baseline with its 95% interval and a zero line: the
    mean best score on the left, the collapse rate (percentage points) on the right."""
    effects = report.effects.by_factor
    # No factors, or no factor with a level to compare: nothing to draw.
    if not any(e.comparisons for e in effects):
        return None
    heights = [0.55 * len(e.levels) + 0.9 for e in effects]
    figure, axes = plt.subplots(
        len(effects), 2, figsize=(11, sum(heights) + 0.6), squeeze=False, sharex="col",
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    for k, (row, effect) in enumerate(zip(axes, effects)):
        for ax, measure in zip(row, _MEASURES):
            _draw_measure(ax, report, k, effect, measure)
    axes[0][1].set_xlim(-108, 108)
    for ax, measure in zip(axes[-1], _MEASURES):
        ax.set_xlabel(measure[3])
    figure.suptitle(
        "Each level against the baseline: the difference with its 95% interval (filled: the interval excludes 0)",
        fontsize=9,
    )
    figure.tight_layout()
    return figure
