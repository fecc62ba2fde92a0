"""Hydra override strings from Python values, checked by Hydra's own parser.

A trial's settings reach a trainer as argv elements `key=value`. Values are written in Hydra's override grammar:
quoted where the grammar needs it, and every string is parsed back with Hydra's parser to prove that the trainer
will read the value that was meant. Nothing ever goes through a shell.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, ListConfig, OmegaConf

_PLAIN = re.compile(r"^[A-Za-z0-9_./~:@%-][A-Za-z0-9_./~:@%+-]*$")


@functools.lru_cache(maxsize=1)
def _parser() -> OverridesParser:
    return OverridesParser.create()


@functools.lru_cache(maxsize=4096)
def parse_override(line: str) -> Override:
    """Return Hydra's parse of one override line; raises `ValueError` with Hydra's message when it does not parse.

    Cached: callers must not mutate the returned Override.
    """
    try:
        return _parser().parse_override(line)
    except Exception as exc:  # Hydra raises OverrideParseException; keep one line of it
        raise ValueError(f"`{line}` is not a valid Hydra override: {str(exc).splitlines()[0]}") from None


def format_value(value: Any) -> str:
    """Return `value` in Hydra's override grammar (quoted where needed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.match(value) and _parses_to(value, value):
            return value
        # In a quoted Hydra string, backslashes are escapes only before a quote (or the closing quote).
        escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
        escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
        return f"'{escaped}'"
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, (dict, DictConfig)):
        return "{" + ",".join(f"{_dict_key(k)}:{format_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot pass a {type(value).__name__} to the trainer: {value!r}")


def format_override(key: str, value: Any) -> str:
    """Return the argv element `key=value`, verified to parse back to `value`."""
    line = f"{key}={format_value(value)}"
    parsed = parse_override(line).value()
    if not _same(_plain_python(parsed), value):
        raise ValueError(f"`{key}`: the value {value!r} does not survive Hydra's override grammar (read back {parsed!r})")
    return line


def _dict_key(key: Any) -> str:
    text = str(key)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", text):
        raise ValueError(f"a mapping key passed to the trainer must be an identifier (got {text!r})")
    return text


def _parses_to(text: str, expected: str) -> bool:
    try:
        value = _parser().parse_override(f"k={text}").value()
    except Exception:
        return False
    return isinstance(value, str) and value == expected


def _plain_python(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b or (isinstance(a, float) and isinstance(b, int) and a == b)
