"""Evaluation sets: which data source a validation metric measures, and how many problems that set has.

verl logs one validation metric per data source: `val-core/<data_source>/<variable>/mean@N` (and the old
`val/test_score/<data_source>`). How noisy such a score is depends on the size of its set: on AIME 2024 (30
problems) one problem is 0.033, on MATH-500 it is 0.002. The size comes, in this order, from the spec
(`objective.eval_sizes`), from the values themselves (a mean over n problems is a multiple of 1/n; see
`infer_size`), or from `KNOWN_EVAL_SIZES` for the common benchmarks.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "KNOWN_EVAL_SIZES",
    "EvalSet",
    "eval_set",
    "eval_source",
    "infer_size",
    "known_size",
    "samples_per_problem",
]

_VAL_CORE = re.compile(r"^val-(?:core|aux)/(?P<source>.+)/(?P<variable>[^/]+)/(?P<stat>[^/]+?)(?:/(?P<sub>[^/]+))?$")
_OLD_VAL = re.compile(r"^val/test_score/(?P<source>.+)$")
_AT_K = re.compile(r"@(?P<k>\d+)")

KNOWN_EVAL_SIZES: dict[str, int] = {
    "aime24": 30,
    "aime2024": 30,
    "aime25": 30,
    "aime2025": 30,
    "amc23": 40,
    "amc2023": 40,
    "math500": 500,
    "gsm8k": 1319,
    "minervamath": 272,
    "olympiadbench": 675,
    "gpqadiamond": 198,
}
"""Problems in the test sets of common benchmarks, by normalised name (the data source's last path component,
lower case, letters and digits only: `HuggingFaceH4/MATH-500` -> `math500`, `openai/gsm8k` -> `gsm8k`). Used only when
neither the spec nor the values give the size; a team that evaluates on a subset must say so in the spec."""

_MAX_INFERRED = 5000
"""The largest set size `infer_size` will conclude (beyond it, float32 rounding makes fractions ambiguous)."""

_MIN_INFORMATIVE = 3
"""How many informative values `infer_size` needs before it concludes anything: values with more than 4 decimals,
or, for values printed to at most 4 decimals, distinct values other than 0 and 1."""

_MAX_CHANCE = 1e-3
"""For rounded values: the largest chance that values spread at random would fit some denominator up to the one
concluded. Above it the fit says nothing (any large enough denominator fits values printed to 3 decimals)."""


def eval_source(metric: str) -> str | None:
    """Return the data source a validation metric measures, or None for any other metric.

    Example:
        >>> eval_source("val-core/HuggingFaceH4/MATH-500/reward/mean@1"), eval_source("val/test_score/openai/gsm8k")
        ('HuggingFaceH4/MATH-500', 'openai/gsm8k')
    """
    match = _VAL_CORE.match(metric) or _OLD_VAL.match(metric)
    return match["source"] if match else None


def samples_per_problem(metric: str) -> int:
    """Return K for a `mean@K` metric (each problem sampled K times), else 1."""
    match = _VAL_CORE.match(metric)
    if match is None:
        return 1
    at_k = _AT_K.search(match["stat"])
    return int(at_k["k"]) if at_k else 1


def known_size(source: str) -> int | None:
    """Return the size of a common benchmark's test set from `KNOWN_EVAL_SIZES`, or None."""
    key = re.sub(r"[^a-z0-9]", "", source.rsplit("/", 1)[-1].lower())
    return KNOWN_EVAL_SIZES.get(key)


def infer_size(values: Iterable[float], per_problem: int = 1) -> int | None:
    """Return the number of problems a mean-accuracy score was computed over, from the values' granularity.

    A mean over n problems, each scored 0 or 1, is a multiple of 1/n (of 1/(nK) for `mean@K`). The size is
    concluded only when it is clear, every value in [0, 1]:

    - **Full precision**: at least 3 distinct values logged with more than 4 decimals, and one denominator of at
      most 5000 that fits every value (to float32 precision for values that are float32, else to 1e-10).
    - **Rounded** (every value printed to d <= 4 decimals, as hand-kept tables and some consoles do): the smallest
      denominator q that fits every value to within half a unit of the last decimal, provided that values spread at
      random would fit some denominator up to q with a chance below 1e-3 (with m distinct values other than 0 and
      1, about `q (q 10^-d)^m`). Twelve values to 3 decimals show a set of 30 problems; they say nothing of one of
      500.

    The denominator found is the least one that fits, so it may be a divisor of the true size: never larger, so the
    noise is never understated. (A score with partial credit, e.g. halves, is a multiple of 1/(2n): such a score's
    spread is at most that of an accuracy over 2n problems' worth of halves, so declare its size in the spec.)

    Args:
        values: The evaluations (NaN and inf are ignored).
        per_problem: K of a `mean@K` metric: the denominator is divided by it.

    Returns:
        The number of problems, or None when the values do not show it.

    Example:
        >>> infer_size([279 / 1319, 1000 / 1319, 0.5])
        >>> infer_size([279 / 1319, 1000 / 1319, 1170 / 1319, 1180 / 1319])
        1319
        >>> infer_size([0.433, 0.467, 0.4, 0.367, 0.533])
        30
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite or any(v < 0.0 or v > 1.0 for v in finite):
        return None
    decimals = _decimals(finite)
    if decimals is not None:
        found = _rounded_denominator(finite, decimals)
        return None if found is None else max(1, found // per_problem)
    informative = {v for v in finite if round(v, 4) != v}
    if len(informative) < _MIN_INFORMATIVE:
        return None
    denominator = 1
    for value in set(finite):
        q = _denominator(value)
        if q is None:
            return None
        denominator = denominator * q // math.gcd(denominator, q)
        if denominator > _MAX_INFERRED:
            return None
    return max(1, denominator // per_problem)


def _decimals(values: Sequence[float]) -> int | None:
    """Return the fewest decimals (at most 4) every value is printed with, or None when some value has more."""
    for decimals in range(5):
        if all(abs(v - round(v, decimals)) <= 1e-12 for v in values):
            return decimals
    return None


def _rounded_denominator(values: Sequence[float], decimals: int) -> int | None:
    """Return the least q whose multiples of 1/q fit every rounded value, when such a fit is unlikely by chance."""
    distinct = sorted({v for v in values if v not in (0.0, 1.0)})
    if len(distinct) < _MIN_INFORMATIVE:
        return None
    unit = 10.0 ** -decimals
    half = unit / 2 + 1e-12
    for q in range(1, _MAX_INFERRED + 1):
        # Values spread at random fit a given q' with a chance of about (q' x unit) each, so some q' <= q with at
        # most q (q x unit)^m; past the limit a fit means nothing, and the chance only grows with q.
        if q * (q * unit) ** len(distinct) > _MAX_CHANCE:
            return None
        if all(abs(v - round(v * q) / q) <= half for v in distinct):
            return q
    return None


def _denominator(value: float) -> int | None:
    """Return the smallest q <= 5000 with value within rounding of p/q (the continued fraction's convergents)."""
    tolerance = 1e-7 if struct.unpack("f", struct.pack("f", value))[0] == value else 1e-10
    if value in (0.0, 1.0):
        return 1
    x = Fraction(value)
    # Convergents p/q of the continued fraction, in increasing q; the first within tolerance has the least q.
    p0, q0, p1, q1 = 0, 1, 1, 0
    for _ in range(64):
        a = math.floor(x)
        p0, q0, p1, q1 = p1, q1, a * p1 + p0, a * q1 + q0
        if q1 > _MAX_INFERRED:
            return None
        if abs(value - p1 / q1) <= tolerance:
            return q1
        remainder = x - a
        if remainder == 0:
            return None
        x = 1 / remainder
    return None


@dataclass(frozen=True, slots=True)
class EvalSet:
    """An evaluation set's size, and where it came from.

    Attributes:
        source: The data source (`aime24`, `openai/gsm8k`, ...).
        size: The number of problems, or None when unknown.
        origin: `spec` (objective.eval_sizes), `inferred` (from the values' granularity), `known` (a common
            benchmark's size, `KNOWN_EVAL_SIZES`) or `unknown`.
    """

    source: str
    size: int | None
    origin: str

    def describe(self) -> str:
        """Return e.g. `aime24: 30 problems (spec)` or `mini: size unknown`."""
        if self.size is None:
            return f"{self.source}: size unknown"
        return f"{self.source}: {self.size} problems ({self.origin})"


def eval_set(metric: str, sizes: Mapping[str, int] | None = None, values: Sequence[float] = ()) -> EvalSet | None:
    """Return the evaluation set behind a validation metric with its size: spec, then values, then known sizes.

    Args:
        metric: A validation metric (`val-core/<source>/...` or `val/test_score/<source>`).
        sizes: The spec's `objective.eval_sizes` (data source -> problems).
        values: The metric's values so far, for `infer_size`.

    Returns:
        The set, or None when the metric names no data source.
    """
    source = eval_source(metric)
    if source is None:
        return None
    if sizes and source in sizes:
        return EvalSet(source, int(sizes[source]), "spec")
    inferred = infer_size(values, samples_per_problem(metric)) if values else None
    if inferred is not None:
        return EvalSet(source, inferred, "inferred")
    known = known_size(source)
    if known is not None:
        return EvalSet(source, known, "known")
    return EvalSet(source, None, "unknown")
