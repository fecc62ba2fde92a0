"""The report's answer in one paragraph: which levels change the collapse rate or the mean best score against the
baseline, by how much, and how sure (the 95% intervals), and which the data cannot tell apart."""

from __future__ import annotations

from orchestrator.collapse import Mode
from orchestrator.report._effects import Comparison, Effects, GroupStats
from orchestrator.report._stats import Interval

__all__ = ["headline"]


def _called(interval: Interval) -> bool:
    """Return True when the interval excludes 0 (the report calls the difference)."""
    return interval.has_bounds and not interval.contains(0.0)


def _rate_sentence(name: str, c: Comparison, group: GroupStats, reference: GroupStats) -> str:
    d = c.collapse_rate_diff
    verb = "lowers" if d.estimate < 0 else "raises"
    return (
        f"{name} {verb} the collapse rate from {reference.collapse_rate.estimate:.0%} to {group.collapse_rate.estimate:.0%} "
        f"({d.estimate * 100:+.0f} points, 95% interval [{d.low * 100:+.0f}, {d.high * 100:+.0f}]; "  # type: ignore[operator]
        f"{group.n_collapsed}/{group.n_rate} vs {reference.n_collapsed}/{reference.n_rate} runs)"
    )


def _score_sentence(name: str, c: Comparison, group: GroupStats, reference: GroupStats, mode: Mode) -> str:
    d = c.best_score_diff
    better = (d.estimate > 0) == (mode == "max")
    return (
        f"{name} {'raises' if d.estimate > 0 else 'lowers'} the mean best score from {reference.best_score.estimate:.3g} "
        f"to {group.best_score.estimate:.3g} ({d.estimate:+.3g}, 95% interval [{d.low:+.3g}, {d.high:+.3g}]; "
        f"{'better' if better else 'worse'}; {group.n_runs} vs {reference.n_runs} runs)"
    )


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _largest(rows: list, attribute: str, scale: float, unit: str) -> str | None:
    """Return the level with the largest estimated difference on one measure, with its interval."""
    finite = [(n, getattr(c, attribute)) for n, c, _, _ in rows if getattr(c, attribute).has_bounds]
    # No difference with an interval: nothing to name.
    if not finite:
        return None
    name, d = max(finite, key=lambda item: abs(item[1].estimate))
    fmt = (lambda v: f"{v * scale:+.0f}") if scale == 100.0 else (lambda v: f"{v:+.3g}")
    return f"{name} ({fmt(d.estimate)}{unit} [{fmt(d.low)}, {fmt(d.high)}])"


def _open_questions(rows: list) -> list[str]:
    """Return, per measure, the levels the data cannot tell apart from the baseline."""
    # Where neither level collapsed there is no collapse-rate question to leave open.
    on_rate = {n for n, c, g, r in rows if not _called(c.collapse_rate_diff) and (g.n_collapsed or r.n_collapsed)}
    on_score = {n for n, c, _, _ in rows if not _called(c.best_score_diff)}
    names = [n for n, _, _, _ in rows]
    parts = (
        ("on either measure", [n for n in names if n in on_rate and n in on_score]),
        ("on the collapse rate", [n for n in names if n in on_rate and n not in on_score]),
        ("on the mean best score", [n for n in names if n in on_score and n not in on_rate]),
    )
    return [f"{where} {_join(found)}" for where, found in parts if found]


def headline(effects: Effects, mode: Mode) -> str | None:
    """Return the answer paragraph, or None when there is no level to compare with a baseline."""
    rows = []
    for effect in effects.by_factor:
        groups = {g.levels[effect.factor]: g for g in effect.levels}
        for c in effect.comparisons:
            rows.append((f"`{effect.factor}`={c.level}", c, groups[c.level], groups[c.baseline]))
    # Nothing to compare: no answer to give.
    if not rows:
        return None
    found = [_rate_sentence(n, c, g, r) for n, c, g, r in rows if _called(c.collapse_rate_diff)]
    found += [_score_sentence(n, c, g, r, mode) for n, c, g, r in rows if _called(c.best_score_diff)]
    base = ", ".join(f"{f}={level}" for f, level in effects.baseline.items())
    text = f"**Answer.** Against the baseline ({base}), with 95% intervals: "
    if found:
        text += "; ".join(found) + "."
        untold = _open_questions(rows)
        if untold:
            text += f" The data cannot tell from the baseline {'; '.join(untold)} (their differences' intervals include 0)."
    else:
        sizes = sorted({g.n_runs for _, _, g, _ in rows} | {r.n_runs for _, _, _, r in rows})
        runs = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        largest = [
            f"on the {what} {found}"
            for what, found in (
                ("collapse rate", _largest(rows, "collapse_rate_diff", 100.0, " points")),
                ("mean best score", _largest(rows, "best_score_diff", 1.0, "")),
            )
            if found
        ]
        text += (
            f"no level changes the collapse rate or the mean best score by more than {runs} runs per level can "
            "resolve: every difference's interval includes 0."
        )
        if largest:
            text += f" The largest differences seen: {' and '.join(largest)}."
    # Every question settled: no caveat to add.
    if found and not _open_questions(rows):
        return text
    return text + (
        " Not being able to tell two levels apart is not evidence that they are the same: the warnings below say "
        "how many seeds per level would settle each."
    )
