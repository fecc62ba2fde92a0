"""Turning logged values into floats, as verl's loggers write them."""

from __future__ import annotations

import math
import re

_NUMPY_WRAPPER = re.compile(r"^np\.\w+\((?P<inner>.*)\)$")
_BOOLS = {"True": 1.0, "False": 0.0, "np.True_": 1.0, "np.False_": 0.0}


def json_value(value: object) -> float | None:
    """Return a JSON value as a float (`null` is NaN: verl writes NaN and inf as null), or None if not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def text_value(text: str) -> float | None:
    """Return a printed number as a float, or None if it is not one.

    Understands what `pprint.pformat` prints for numbers: `0.5`, `nan`, `inf`, `True`, and numpy 2's
    `np.float64(0.5)`, `np.int64(3)`, `np.True_`.
    """
    text = text.strip()
    if text in _BOOLS:
        return _BOOLS[text]
    wrapped = _NUMPY_WRAPPER.match(text)
    if wrapped:
        text = wrapped["inner"].strip()
    try:
        return float(text)
    except ValueError:
        return None
