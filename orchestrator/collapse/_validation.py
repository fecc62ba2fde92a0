"""Argument checks shared by the rules and `CollapseConfig`, with messages in one form.

Each raises `ValueError("`<name>` must be ... but got <value>.")`; pydantic turns it into a validation error
that names the field path.
"""

from __future__ import annotations

import math


def check_mode(mode: str) -> str:
    """Return `mode` if it is `max` or `min`."""
    if mode not in ("max", "min"):
        raise ValueError(f"`mode` must be one of ['max', 'min'] but got {mode!r}.")
    return mode


def check_metric(name: str, metric: str) -> str:
    """Return `metric` if it is a non-empty metric name."""
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"`{name}` must be a non-empty metric name but got {metric!r}.")
    return metric


def check_at_least(name: str, value: int, minimum: int) -> int:
    """Return `value` if it is at least `minimum`."""
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum} but got {value}.")
    return value


def check_open_unit(name: str, value: float) -> float:
    """Return `value` if it lies strictly between 0 and 1."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be greater than 0 and less than 1 but got {value}.")
    return value


def check_fraction(name: str, value: float) -> float:
    """Return `value` if it lies above 0 and at most 1."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"`{name}` must be greater than 0 and at most 1 but got {value}.")
    return value


def check_positive(name: str, value: float) -> float:
    """Return `value` if it is a finite number above 0."""
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"`{name}` must be a finite number greater than 0 but got {value}.")
    return value


def check_non_negative(name: str, value: float) -> float:
    """Return `value` if it is a finite number of at least 0."""
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"`{name}` must be a finite number of at least 0 but got {value}.")
    return value


def check_above_one(name: str, value: float) -> float:
    """Return `value` if it is a finite number above 1."""
    if not (math.isfinite(value) and value > 1.0):
        raise ValueError(f"`{name}` must be a finite number greater than 1 but got {value}.")
    return value


def check_baseline(baseline: float | str) -> float | str:
    """Return `baseline` if it is a finite number or `first`."""
    if baseline == "first":
        return baseline
    if isinstance(baseline, str) or not math.isfinite(baseline):
        raise ValueError(f"`baseline` must be a finite number or 'first' but got {baseline!r}.")
    return float(baseline)
