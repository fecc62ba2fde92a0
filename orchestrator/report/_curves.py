"""The mean curve of a configuration's seeds, as the report's figures and the dashboard both draw it."""

from __future__ import annotations

import math
from collections.abc import Sequence

Curve = list[tuple[int, float]]


def mean_curve(curves: Sequence[Sequence[tuple[int, float]]]) -> tuple[Curve, Curve]:
    """Return the mean over runs at each step: where every run has a value, and (partial) from the last such step on.

    Once a seed has stopped (a collapse stop), the mean of the seeds left is no longer a mean over the whole
    configuration: it is returned apart, to be drawn dotted (empty when it has fewer than two points).
    """
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(step, []).append(value)
    full = [(step, sum(v) / len(v)) for step, v in sorted(by_step.items()) if len(v) == len(curves)]
    last_full = full[-1][0] if full else -math.inf
    partial = [(step, sum(v) / len(v)) for step, v in sorted(by_step.items()) if step >= last_full]
    return full, partial if len(partial) > 1 else []
