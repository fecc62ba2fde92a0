"""Write a `Report` out: `report.md` (with the figures as PNGs), a self-contained `report.html` (the figures inlined
as SVG, their panels, lines and intervals tagged with ids and data attributes), `trials.csv` and `summary.json`.

The Markdown and the HTML are rendered from one list of blocks, so that they always say the same thing.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.report._build import Report
from orchestrator.report._effects import Comparison, Effects, FactorEffects, GroupStats, InteractionTable
from orchestrator.report._headline import headline
from orchestrator.report._rescue import COLLAPSED_AGAIN, ENDED_OTHERWISE, RESCUED, RUNNING, RemedyRescue, RescueSummary
from orchestrator.report._stats import Interval
from orchestrator.report._summary import RunSummary, jsonable

__all__ = ["ReportFiles", "report_json", "trials_frame", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written.

    Attributes:
        markdown: report.md.
        html: report.html (self-contained).
        csv: trials.csv (one row per run).
        json: summary.json.
        figures: The PNGs, by stem.
    """

    markdown: Path
    html: Path
    csv: Path
    json: Path
    figures: dict[str, Path]


# --- blocks ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Para:
    text: str


@dataclass(frozen=True)
class _Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class _Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class _Image:
    name: str
    alt: str


_Block = _Heading | _Para | _Bullets | _Table | _Image


# --- formatting -----------------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def _interval(interval: Interval, *, percent: bool = False, signed: bool = False) -> str:
    """Return e.g. `0.62 [0.55, 0.68]`, `33% [6%, 79%]`, `-67 [-94, +6]`, or `0.62 (no interval: one value)`."""
    # A difference of rates is in percentage points: the caller names the unit.
    scale, unit = (100.0, "" if signed else "%") if percent else (1.0, "")
    if not math.isfinite(interval.estimate):
        return f"– ({interval.note})" if interval.note else "–"
    sign = "+" if signed else ""
    fmt = (lambda v: f"{v * scale:{sign}.0f}{unit}") if percent else (lambda v: f"{v:{sign}.3g}")
    estimate = fmt(interval.estimate)
    if not interval.has_bounds:
        return f"{estimate} (no interval: {interval.note})"
    return f"{estimate} [{fmt(interval.low)}, {fmt(interval.high)}]"


def _steps(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f}"


def _levels(levels: dict[str, str] | Any) -> str:
    return ", ".join(f"{f}={level}" for f, level in levels.items()) or "–"


# --- the report's sections -------------------------------------------------------------------------------------------


def _overview(report: Report) -> list[_Block]:
    effects = report.effects
    n_collapsed = sum(s.collapsed for s in report.summaries)
    objectives = ", ".join(f"`{o}`" for o in report.objectives) or "none"
    blocks: list[_Block] = [
        _Heading(1, report.title),
        _Para(
            f"{len(report.summaries)} runs, {n_collapsed} collapsed. Objective: {objectives} ({report.mode}). "
            f"Design: {_design_phrase(effects)}."
        ),
    ]
    answer = headline(effects, report.mode)
    if answer is not None:
        blocks.append(_Para(answer))
    if report.judged_by or report.notes:
        blocks.append(_Bullets(tuple(report.judged_by) + tuple(report.notes)))
    return blocks


def _design_phrase(effects: Effects) -> str:
    if effects.design == "none":
        return "no factors (group runs with --group-by or --labels to compare levels)"
    factors = ", ".join(f"`{f}`" for f in effects.factors)
    names = {"single": "one factor", "one_at_a_time": "one factor at a time", "grid": "full grid", "other": "other"}
    base = ", ".join(f"{f}={level}" for f, level in effects.baseline.items())
    return f"{names[effects.design]} over {factors}; baseline {base}"


def _answer(report: Report) -> list[_Block]:
    effects = report.effects
    # No factors: there is no question of which factor helps.
    if not effects.by_factor:
        return []
    blocks: list[_Block] = [_Heading(2, "Which factor prevents collapse, by how much")]
    sentences = [_comparison_sentence(c, e) for e in effects.by_factor for c in e.comparisons]
    blocks.append(_Bullets(tuple(sentences)))
    if effects.best is not None:
        best = effects.best
        blocks.append(
            _Para(
                f"Best configuration (lowest collapse rate, then best mean best score): **{best.label}** — collapse "
                f"rate {_interval(best.collapse_rate, percent=True)} ({best.n_collapsed}/{best.n_rate}), mean best "
                f"score {_interval(best.best_score)} over {best.n_runs} run(s)."
            )
        )
    if effects.warnings:
        blocks.append(_Heading(3, "Where the data cannot tell levels apart"))
        blocks.append(_Bullets(tuple(f"Warning: {w}" for w in effects.warnings)))
    return blocks


def _comparison_sentence(comparison: Comparison, effect: FactorEffects) -> str:
    groups = {g.levels[effect.factor]: g for g in effect.levels}
    group, reference = groups[comparison.level], groups[comparison.baseline]
    f = effect.factor
    return (
        f"`{f}`={comparison.level} vs `{f}`={comparison.baseline} (baseline): collapse rate "
        f"{_interval(group.collapse_rate, percent=True)} vs {_interval(reference.collapse_rate, percent=True)}, "
        f"difference {_interval(comparison.collapse_rate_diff, percent=True, signed=True)} points; mean best score "
        f"{_interval(group.best_score)} vs {_interval(reference.best_score)}, difference "
        f"{_interval(comparison.best_score_diff, signed=True)}; median steps to collapse "
        f"{_steps(group.survival.median_steps)} vs {_steps(reference.survival.median_steps)}."
    )


def _group_row(group: GroupStats, name: str) -> tuple[str, ...]:
    asha = f", {group.n_asha} stopped by ASHA" if group.n_asha else ""
    return (
        name,
        str(group.n_runs),
        _interval(group.best_score),
        f"{_interval(group.collapse_rate, percent=True)} ({group.n_collapsed}/{group.n_rate}{asha})",
        _steps(group.survival.median_steps),
    )


_GROUP_HEADERS = ("level", "runs", "mean best score [95% CI]", "collapse rate [95% CI]", "median steps to collapse")


def _factor_sections(report: Report) -> list[_Block]:
    blocks: list[_Block] = []
    for effect in report.effects.by_factor:
        blocks.append(_Heading(3, f"Factor `{effect.factor}` ({effect.scope})"))
        rows = tuple(_group_row(g, g.levels[effect.factor]) for g in effect.levels)
        blocks.append(_Table(_GROUP_HEADERS, rows))
        if effect.comparisons:
            blocks.append(
                _Table(
                    ("level vs baseline", "Δ mean best score [95% CI]", "Δ collapse rate, points [95% CI]"),
                    tuple(
                        (
                            f"{c.level} vs {c.baseline}",
                            _interval(c.best_score_diff, signed=True),
                            _interval(c.collapse_rate_diff, percent=True, signed=True),
                        )
                        for c in effect.comparisons
                    ),
                )
            )
        test = effect.logrank
        verdict = f"χ² = {test.statistic:.3g}, p = {test.p_value:.3g}" if test.p_value is not None else test.note
        blocks.append(_Para(f"Log-rank test of equal survival across the levels of `{effect.factor}`: {verdict}."))
    return blocks


def _interaction_sections(report: Report) -> list[_Block]:
    blocks: list[_Block] = []
    for table in report.effects.interactions:
        blocks.append(_Heading(3, f"Interaction `{table.factors[0]}` × `{table.factors[1]}`"))
        blocks.extend(_interaction_tables(table))
    return blocks


def _interaction_tables(table: InteractionTable) -> list[_Block]:
    a, b = table.factors
    headers = (f"{a} \\ {b}", *table.columns)

    def cells(render: Callable[[GroupStats], str]) -> tuple[tuple[str, ...], ...]:
        return tuple((row, *(render(table.cells[(row, col)]) for col in table.columns)) for row in table.rows)

    return [
        _Para("Mean best score [95% CI]:"),
        _Table(headers, cells(lambda g: _interval(g.best_score))),
        _Para("Collapse rate [95% CI] (collapsed/runs):"),
        _Table(headers, cells(lambda g: f"{_interval(g.collapse_rate, percent=True)} ({g.n_collapsed}/{g.n_rate})")),
    ]


def _effects_section(report: Report) -> list[_Block]:
    effects = report.effects
    # No factors: nothing per level.
    if not effects.by_factor:
        return []
    blocks: list[_Block] = [_Heading(2, "Effects per factor")]
    blocks.extend(_factor_sections(report))
    if effects.design == "grid":
        blocks.append(_Heading(2, "Main effects and interactions"))
        blocks.append(
            _Para("In a grid each factor's levels above are its main effects: every run, averaged over the other factors.")
        )
        blocks.extend(_interaction_sections(report))
    if len(effects.configurations) > 1:
        blocks.append(_Heading(3, "Configurations"))
        rows = tuple(_group_row(g, g.label) for g in effects.configurations)
        blocks.append(_Table(("configuration", *_GROUP_HEADERS[1:]), rows))
    return blocks


def _runs_section(report: Report) -> list[_Block]:
    headers = (
        "run", "levels", "seed", "best step", "best score", "final step", "stop reason", "collapse onset", "rule",
    )  # fmt: skip
    rows = tuple(
        (
            s.run,
            _levels(s.levels),
            "–" if s.seed is None else str(s.seed),
            "–" if s.best_step is None else str(s.best_step),
            _num(s.best_score),
            "–" if s.final_step is None else str(s.final_step),
            s.stop_reason,
            str(s.collapse.step) if s.collapse else "–",
            s.collapse.label if s.collapse else "–",
        )
        for s in report.summaries
    )
    if any(s.checkpoint for s in report.summaries):
        headers = (*headers, "best checkpoint")
        rows = tuple((*row, s.checkpoint or "–") for row, s in zip(rows, report.summaries))
    return [
        _Heading(2, "Runs"),
        _Para("The best checkpoint of each run is the one at its best step (the nearest saved one at or before it)."),
        _Table(headers, rows),
    ]


def _collapsed_sections(report: Report) -> list[_Block]:
    collapsed = [s for s in report.summaries if s.collapse is not None]
    # Nothing collapsed: no timelines.
    if not collapsed:
        return []
    blocks: list[_Block] = [_Heading(2, "Collapsed runs")]
    for summary in collapsed:
        blocks.extend(_collapsed_run(summary))
    return blocks


def _collapsed_run(summary: RunSummary) -> list[_Block]:
    collapse, timeline = summary.collapse, summary.timeline
    assert collapse is not None  # only collapsed runs come here
    steps = ", ".join(
        f"{name} {'–' if step is None else step}"
        for name, step in (
            ("best", timeline.best),
            ("last healthy eval", timeline.last_healthy_eval),
            ("onset", timeline.onset),
            ("dead", timeline.dead),
        )
    )
    rows = tuple(
        (
            metric,
            _num(summary.metrics_at_best.get(metric)),
            _num(summary.metrics_after.get(metric)),
            _pct(summary.change_pct(metric)),
        )
        for metric in dict.fromkeys([*summary.metrics_at_best, *summary.metrics_after])
    )
    blocks: list[_Block] = [
        _Heading(3, f"`{summary.run}`"),
        _Para(
            f"Timeline: {steps}. `{collapse.rule}` fired at step {collapse.fired_step}: {collapse.reason}"
            if collapse.confirmed
            else f"Timeline: {steps}. The run ended collapsed, unconfirmed (`{collapse.rule}`): {collapse.reason}"
        ),
    ]
    if summary.warnings:
        blocks.append(_Para("Warnings (leading signs; they do not stop a run): " + "; ".join(
            f"`{w.rule}` at step {w.step} ({_lead(collapse.step - w.step)}): {w.reason}" for w in summary.warnings
        )))
    blocks.append(_Table(("metric", "around the best step", "after the onset", "change"), rows))
    return blocks


def _lead(steps: int) -> str:
    if steps > 0:
        return f"{steps} steps before the onset"
    return "at the onset" if steps == 0 else f"{-steps} steps after the onset"


def _warning_section(report: Report) -> list[_Block]:
    """How often each leading sign warned, on the runs that collapsed and on those that did not."""
    warned = [s for s in report.summaries if s.warnings]
    # No sign warned anywhere: nothing to say.
    if not warned:
        return []
    rows = []
    for sign in dict.fromkeys(w.rule for s in warned for w in s.warnings):
        hits = [(s, next(w for w in s.warnings if w.rule == sign)) for s in warned if any(w.rule == sign for w in s.warnings)]
        before = [s.collapse.step - w.step for s, w in hits if s.collapse is not None and w.step <= s.collapse.step]
        rows.append((
            f"`{sign}`",
            str(sum(1 for s, _ in hits if s.collapse is not None)),
            "–" if not before else f"{statistics.median(before):g}",
            str(sum(1 for s, _ in hits if s.collapse is None)),
        ))
    return [
        _Heading(2, "Leading signs"),
        _Para(
            "Warnings, not stops: on real runs these signs also fire on runs that never collapse (healthy verl runs "
            "lose 70-85% of their entropy), so they stop nothing on their own."
        ),
        _Table(("sign", "collapsed runs warned", "median steps before the onset", "runs without a collapse warned"), tuple(rows)),
    ]


def _rescue_section(report: Report) -> list[_Block]:
    """Per remedy: how often its branches reached the end of the budget, their scores, the steps they used."""
    rescue = report.rescue
    # No rescue branches: no section.
    if rescue is None:
        return []
    remedy_rows = tuple(
        (
            f"`{r.remedy}`",
            str(len(r.branches)),
            str(r.count(RESCUED)),
            _interval(r.rate, percent=True),
            str(r.count(COLLAPSED_AGAIN)),
            f"{r.count(RUNNING)} / {r.count(ENDED_OTHERWISE)}",
            _interval(r.best_diff, signed=True),
            str(r.steps_used),
            str(r.steps_from_scratch),
            "–" if r.scratch is None else _scratch_rate(r),
            "–" if r.scratch is None else _interval(r.scratch.best_score),
        )
        for r in rescue.remedies
    )
    branch_rows = tuple(
        (
            b.run, b.parent, f"`{b.remedy}`", str(b.from_step), b.outcome, str(b.steps),
            _num(b.best_after), _num(b.parent_best), "–" if b.best_diff is None else f"{b.best_diff:+.4g}",
        )
        for r in rescue.remedies
        for b in r.branches
    )  # fmt: skip
    return [
        _Heading(2, "Rescue branches"),
        _Para(
            f"Each trial a collapse rule stopped was branched once per remedy from one of its checkpoints and trained "
            f"with the remedy for the rest of its {rescue.max_steps} steps. Branches are not runs of the ablation "
            "(its effects, collapse rates, runs and plots): they are judged here. A branch is rescued when it reached "
            "the end of the budget without collapsing again; the rescue rate is over the branches that were rescued "
            "or collapsed again, with Wilson's 95% interval. Best scores are of "
            f"`{rescue.objective}` ({'higher' if rescue.mode == 'max' else 'lower'} is better); a branch's best "
            "counts only its evaluations after the step it branched from, and the mean difference from the parent's "
            "best is over the finished branches."
        ),
        _Table(
            (
                "remedy", "branches", "rescued", "rescue rate [95% CI]", "collapsed again", "running / ended otherwise",
                "Δ best score vs parent's best, mean [95% CI]", "trainer steps used", "steps from scratch",
                "from scratch: collapse rate [95% CI]", "from scratch: mean best score [95% CI]",
            ),
            remedy_rows,
        ),
        *(_Para(_rescue_reading(r, rescue)) for r in rescue.remedies),
        _Table(
            (
                "branch", "parent", "remedy", "from step", "outcome", "steps used", "best after branching",
                "parent's best", "difference",
            ),
            branch_rows,
        ),
    ]


def _scratch_rate(remedy: RemedyRescue) -> str:
    scratch = remedy.scratch
    assert scratch is not None  # only remedies with from-scratch trials come here
    return f"{_interval(scratch.collapse_rate, percent=True)} ({scratch.n_collapsed}/{scratch.n_rate})"


def _rescue_reading(remedy: RemedyRescue, rescue: RescueSummary) -> str:
    """One paragraph: the remedy's rescue rate and how sure it is, its scores, its steps, the from-scratch runs."""
    n, rate = len(remedy.branches), remedy.rate
    decided, rescued = remedy.count(RESCUED) + remedy.count(COLLAPSED_AGAIN), remedy.count(RESCUED)
    counts = ((remedy.count(RUNNING), "still running"), (remedy.count(ENDED_OTHERWISE), "ended otherwise"))
    pending = [f"{k} {what}" for k, what in counts if k]
    aside = f" ({', '.join(pending)}: left out of the rate)" if pending else ""
    if decided == 0:
        text = f"`{remedy.remedy}`: none of its {n} branches has finished yet{aside}."
    else:
        text = (
            f"`{remedy.remedy}`: {rescued} of {decided} finished branches reached step {rescue.max_steps} without "
            f"collapsing again{aside}: rescue rate {_interval(rate, percent=True)}. "
        )
        low, high = _pct0(rate.low), _pct0(rate.high)
        if rate.low is not None and rate.low > 0.5:
            text += (
                f"The interval lies above 50%: it rescues most runs, though with {decided} branches the rate may be "
                f"as low as {low}."
            )
        elif rate.high is not None and rate.high < 0.5:
            text += f"The interval lies below 50%: it rescues fewer than half of the runs (at most {high})."
        else:
            text += (
                f"The interval spans {low} to {high}: {decided} branches cannot tell whether it rescues most runs "
                "or few."
            )
    if math.isfinite(remedy.best_diff.estimate):
        text += (
            f" Best score after branching less the parent's best: {_interval(remedy.best_diff, signed=True)} on "
            f"average ({'higher' if rescue.mode == 'max' else 'lower'} is better)."
        )
        diff = remedy.best_diff
        if diff.has_bounds and diff.contains(0.0):
            text += " Its interval includes 0: the branches' best cannot be told apart from their parents'."
        elif diff.has_bounds:
            side = "above" if diff.estimate > 0 else "below"
            text += f" Its interval excludes 0: the branches' best is {side} their parents'."
    else:
        text += " No finished branch has evaluated after branching."
    share = f"{remedy.steps_used / remedy.steps_from_scratch:.0%} of" if remedy.steps_from_scratch else "against"
    text += (
        f" The branches trained {remedy.steps_used} steps, {share} the {remedy.steps_from_scratch} "
        f"({n} × {rescue.max_steps}) that from-scratch runs of the remedy would take."
    )
    scratch = remedy.scratch
    if scratch is None:
        return text + " There are no from-scratch trials of this configuration in the sweep."
    return text + (
        f" The same configuration trained from step 0 in this sweep ({len(scratch.runs)} runs, {scratch.steps} steps): "
        f"collapse rate {_interval(scratch.collapse_rate, percent=True)} ({scratch.n_collapsed}/{scratch.n_rate}), "
        f"mean best score {_interval(scratch.best_score)}."
    )


def _pct0(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.0f}%"


_FIGURE_TITLES = {
    "validation": (
        "Validation score, one panel per configuration (panels share their axes): each seed a thin line in the "
        "configuration's colour, their mean bold (dotted from the first step a seed no longer reports), an x at each "
        "collapse onset, the baseline's mean dashed grey."
    ),
    "signals": "Entropy and response length per run, coloured by configuration.",
    "effects": (
        "Each level's difference from the baseline with its 95% interval, for the mean best score and the collapse "
        "rate; the black line is zero. An interval that crosses it cannot tell the level from the baseline."
    ),
    "survival": "Kaplan-Meier curves of steps until collapse, per level, with their pointwise 95% bands.",
}


def _figures_section(names: Sequence[str]) -> list[_Block]:
    # No figures: no section.
    if not names:
        return []
    blocks: list[_Block] = [_Heading(2, "Plots")]
    for name in names:
        blocks.append(_Para(_FIGURE_TITLES.get(name, name)))
        blocks.append(_Image(name, _FIGURE_TITLES.get(name, name)))
    return blocks


_METHODS = (
    "Mean best score: the mean over runs (seeds) with Student's t 95% interval. A bootstrap interval cannot be "
    "wider than the range of 3 values and covered the mean of 20 other seeds in only 63% of 3-seed samples "
    "(benchmarks/results/validity.md); t's covered it in 93%.",
    "Collapse rate: collapsed runs over runs that either collapsed or ran to their end, with the mid-p interval "
    "(Clopper-Pearson's exact interval with half the probability of the observed count). Runs stopped by ASHA "
    "before collapsing are left out of the rate: they neither collapsed nor survived to the end.",
    "Differences from the baseline: Welch's t interval for mean best scores; for collapse rates Newcombe's "
    "square-and-add interval built from the two mid-p intervals. With 3 runs per level only 0/3 against 3/3 can be "
    "told apart.",
    "Steps to collapse: Kaplan-Meier (lifelines). A collapsed run's event is its onset step; a run that ended "
    "without collapsing is censored at its last step, one stopped by ASHA at its stop step. The median is "
    "'not reached' while fewer than half the runs collapsed. Levels are compared with the log-rank test.",
    "A level 'cannot be told apart' from the baseline when the 95% interval of the difference includes 0; the "
    "warning then says how many seeds per level would tell them apart if the difference and spread seen hold (80% "
    "power, two-sided 5% test: the t test's exact power for best scores, Fleiss' formula with continuity "
    "correction for collapse rates).",
)


def _blocks(report: Report, figure_names: Sequence[str]) -> list[_Block]:
    return [
        *_overview(report),
        *_figures_section(figure_names),
        *_answer(report),
        *_effects_section(report),
        *_runs_section(report),
        *_collapsed_sections(report),
        *_warning_section(report),
        *_rescue_section(report),
        _Heading(2, "Statistics"),
        _Bullets(_METHODS),
    ]


# --- Markdown and HTML ----------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(blocks: Sequence[_Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            lines += [f"{'#' * block.level} {block.text}", ""]
        elif isinstance(block, _Para):
            lines += [block.text, ""]
        elif isinstance(block, _Bullets):
            lines += [*(f"- {item}" for item in block.items), ""]
        elif isinstance(block, _Table):
            lines.append("| " + " | ".join(map(_md_cell, block.headers)) + " |")
            lines.append("|" + "---|" * len(block.headers))
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, _Image):
            lines += [f"![{block.alt}]({block.name}.png)", ""]
    return "\n".join(lines)


def _inline_html(text: str) -> str:
    """Escape text and render the two inline marks the report uses: `code` and **bold**."""
    parts = html.escape(text).split("`")
    out = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    bold = out.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(bold))


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f2f2f2}"
    "code{background:#f4f4f4;padding:0 .2em}li{margin:.2em 0}"
    "figure{margin:.5em 0 1.5em}figure svg{max-width:100%;height:auto}"
)


def _html(title: str, blocks: Sequence[_Block], svgs: dict[str, str]) -> str:
    body: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            body.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, _Para):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, _Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, _Table):
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in block.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, _Image):
            body.append(
                f'<figure id="fig-{block.name}" role="img" aria-label="{html.escape(block.alt)}">{svgs[block.name]}</figure>'
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# --- tables and JSON ------------------------------------------------------------------------------------------------


def trials_frame(report: Report) -> pd.DataFrame:
    """Return one row per run: levels, seed, best, end, stop reason, collapse, and the signals before/after."""
    factors = list(report.effects.factors) or list(dict.fromkeys(f for s in report.summaries for f in s.levels))
    rows = []
    for s in report.summaries:
        row: dict[str, Any] = {"run": s.run, **{f: s.levels.get(f) for f in factors}}
        row.update(
            seed=s.seed,
            objective=s.objective,
            best_step=s.best_step,
            best_score=s.best_score,
            final_step=s.final_step,
            stop_reason=s.stop_reason,
            stop_step=s.stop_step,
            collapse_step=s.collapse.step if s.collapse else None,
            collapse_rule=s.collapse.rule if s.collapse else None,
            collapse_fired_step=s.collapse.fired_step if s.collapse else None,
            collapse_confirmed=s.collapse.confirmed if s.collapse else None,
            warnings="; ".join(f"{w.rule}@{w.step}" for w in s.warnings) or None,
            last_healthy_eval=s.timeline.last_healthy_eval,
            dead_step=s.timeline.dead,
            best_checkpoint=s.checkpoint,
        )
        row.update({f"at_best:{m}": v for m, v in s.metrics_at_best.items()})
        row.update({f"after:{m}": v for m, v in s.metrics_after.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _group_json(group: GroupStats) -> dict[str, Any]:
    return {
        "levels": dict(group.levels),
        "runs": list(group.runs),
        "n_runs": group.n_runs,
        "best_score": group.best_score.to_dict(),
        "collapse_rate": group.collapse_rate.to_dict(),
        "n_collapsed": group.n_collapsed,
        "n_asha": group.n_asha,
        "median_steps_to_collapse": group.survival.median_steps,
    }


def _factor_json(effect: FactorEffects) -> dict[str, Any]:
    return {
        "factor": effect.factor,
        "baseline": effect.baseline,
        "scope": effect.scope,
        "levels": [_group_json(g) for g in effect.levels],
        "comparisons": [
            {
                "level": c.level,
                "baseline": c.baseline,
                "best_score_diff": c.best_score_diff.to_dict(),
                "collapse_rate_diff": c.collapse_rate_diff.to_dict(),
                "best_score_seeds": c.best_score_seeds,
                "collapse_rate_seeds": c.collapse_rate_seeds,
            }
            for c in effect.comparisons
        ],
        "logrank": {"statistic": effect.logrank.statistic, "p_value": effect.logrank.p_value, "note": effect.logrank.note},
    }


def report_json(report: Report) -> dict[str, Any]:
    """Return the whole report as JSON-friendly data: runs (the `--json` shape), factors, configurations, best."""
    effects = report.effects
    return jsonable(
        {
            "title": report.title,
            "mode": report.mode,
            "objectives": report.objectives,
            "design": effects.design,
            "baseline": dict(effects.baseline),
            "runs": [s.to_json() for s in report.summaries],
            "factors": [_factor_json(e) for e in effects.by_factor],
            "configurations": [_group_json(g) for g in effects.configurations],
            "interactions": [
                {
                    "factors": list(t.factors),
                    "cells": [{"levels": [a, b], **_group_json(g)} for (a, b), g in t.cells.items()],
                }
                for t in effects.interactions
            ],
            "best_configuration": _group_json(effects.best) if effects.best else None,
            "warnings": list(effects.warnings),
            "notes": list(report.notes),
            "judged_by": list(report.judged_by),
            # Only a sweep with rescue branches has the key.
            **({"rescue": report.rescue.to_json()} if report.rescue is not None else {}),
        }
    )


def write_report(report: Report, out_dir: Path, *, with_figures: bool = True) -> ReportFiles:
    """Write report.md, report.html, the PNGs, trials.csv and summary.json into `out_dir` (created if needed).

    Args:
        report: The report.
        out_dir: The folder to write into.
        with_figures: Draw the figures (the slowest part).
    """
    from orchestrator.report._plots import figures, render

    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = {name: render(figure) for name, figure in figures(report).items()} if with_figures else {}
    figure_paths = {}
    for name, (png, _) in rendered.items():
        figure_paths[name] = out_dir / f"{name}.png"
        figure_paths[name].write_bytes(png)
    blocks = _blocks(report, list(rendered))
    files = ReportFiles(
        markdown=out_dir / "report.md",
        html=out_dir / "report.html",
        csv=out_dir / "trials.csv",
        json=out_dir / "summary.json",
        figures=figure_paths,
    )
    files.markdown.write_text(_markdown(blocks))
    files.html.write_text(_html(report.title, blocks, {name: svg for name, (_, svg) in rendered.items()}))
    trials_frame(report).to_csv(files.csv, index=False)
    files.json.write_text(json.dumps(report_json(report), indent=2, allow_nan=False))
    return files
