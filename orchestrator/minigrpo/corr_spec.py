"""verl 0.9.1's rollout-correction settings, parsed and checked without torch (the config check imports this).

`parse_is_threshold` and `parse_rs` accept what verl's rollout_corr_helper accepts and refuse the rest with its
wording; tests/test_minigrpo_rollout_corr.py checks both against verl's parsers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

IS_LEVELS = ("token", "sequence")
LOSS_TYPES = ("ppo_clip", "reinforce")
RS_OPTIONS = (
    "token_k1", "token_k2", "token_k3",
    "seq_sum_k1", "seq_sum_k2", "seq_sum_k3",
    "seq_mean_k1", "seq_mean_k2", "seq_mean_k3",
    "seq_max_k2", "seq_max_k3",
)


def parse_is_threshold(spec: object) -> tuple[float, float | None]:
    """Return (upper, lower) of a `rollout_is_threshold`: a number (TIS; lower None) or "lower_upper" (IcePop).

    Raises:
        ValueError: Not a positive number or a "lower_upper" string with 0 < lower <= upper (verl's wording).
    """
    if isinstance(spec, bool) or not isinstance(spec, (int, float, str)):
        raise ValueError(f"rollout_is_threshold must be a float or a string threshold specification, got {spec!r}.")
    lower: float | None = None
    text = str(spec).strip()
    parts = text.split("_", 1) if isinstance(spec, str) else [text]
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise ValueError(f"Invalid rollout_is_threshold '{spec}'.") from None
    upper = numbers[-1]
    if len(numbers) == 2:
        lower = numbers[0]
    if not upper > 0:
        raise ValueError(f"rollout_is_threshold upper bound must be positive, got {upper}.")
    if lower is not None and not lower > 0:
        raise ValueError(f"rollout_is_threshold lower bound must be positive, got {lower}.")
    if lower is not None and lower > upper:
        raise ValueError("rollout_is_threshold lower bound must be <= upper bound.")
    return upper, lower


@dataclass(frozen=True)
class RsCheck:
    """One parsed `rollout_rs` option: its statistic, how it is aggregated over a sequence and its bounds."""

    option: str
    estimator: str  # k1, k2, k3
    level: str  # token, sum, mean, max
    upper: float  # for k1: log of the ratio bound
    lower: float | None  # k1 only, log of the ratio bound


def parse_rs(options: object, threshold: object) -> list[RsCheck]:
    """Parse `rollout_rs` ("token_k1,seq_mean_k3") and `rollout_rs_threshold` (one value, or one per option).

    k1 options bound the ratio itself (`lower_upper`, or one value v meaning [1/v, v]); k2 and k3 options take one
    positive upper bound.

    Raises:
        ValueError: An unknown option, a missing or malformed threshold (verl's wording).
    """
    if not isinstance(options, str) or not options.strip():
        raise ValueError("rollout_rs must be a non-empty string (comma separated for multiple options).")
    names: list[str] = []
    for name in (part.strip() for part in options.split(",")):
        if name and name not in RS_OPTIONS:
            raise ValueError(f"Invalid rollout_rs option: {name}. Must be one of {sorted(RS_OPTIONS)}.")
        if name and name not in names:
            names.append(name)
    if threshold is None:
        raise ValueError("rollout_rs_threshold must be provided for rejection sampling.")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, str)):
        raise ValueError("rollout_rs_threshold must be a string or numeric value specifying per-option thresholds.")
    specs = [str(threshold)] if not isinstance(threshold, str) else [p.strip() for p in threshold.split(",")]
    specs = [s for s in specs if s]
    if len(specs) not in (1, len(names)):
        raise ValueError(f"rollout_rs_threshold expects either one threshold shared by all options or exactly "
                         f"{len(names)} thresholds to match the provided rollout_rs options.")
    specs = specs * len(names) if len(specs) == 1 else specs
    return [_rs_check(name, spec) for name, spec in zip(names, specs, strict=True)]


def _rs_check(name: str, spec: str) -> RsCheck:
    estimator = name[-2:]
    level = "token" if name.startswith("token") else name.split("_")[1]
    try:
        if estimator == "k1":
            low_text, up_text = spec.split("_", 1) if "_" in spec else ("", spec)
            upper = float(up_text)
            lower = float(low_text) if low_text else 1.0 / upper
        else:
            if "_" in spec:
                raise ValueError(f"rollout_rs_threshold for option '{name}' must provide a single upper bound "
                                 f"without '_'. Received '{spec}'.")
            upper, lower = float(spec), None
    except (ValueError, ZeroDivisionError) as exc:
        if "single upper bound" in str(exc):
            raise
        raise ValueError(f"Invalid numeric threshold '{spec}' for option '{name}'.") from None
    if not upper > 0 or (lower is not None and not lower > 0):
        raise ValueError(f"Thresholds for option '{name}' must be positive, got {spec}.")
    if lower is not None and lower > upper:
        raise ValueError(f"Thresholds for option '{name}' must be lower <= upper, got {spec}.")
    if lower is None:
        return RsCheck(name, estimator, level, upper, None)
    return RsCheck(name, estimator, level, math.log(upper), math.log(lower))
