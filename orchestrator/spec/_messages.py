"""One line per problem from a pydantic validation error: `<field path>: <what is allowed> (got <value>)`."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError


def format_loc(loc: tuple[Any, ...]) -> str:
    """Return a YAML field path such as `factors.kl[1].coef` from a pydantic error location."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union")):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} item(s)",
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
}


def format_errors(exc: ValidationError) -> list[str]:
    """Return one `path: message (got value)` line per distinct problem in a pydantic error."""
    lines: list[str] = []
    seen: set[str] = set()
    for err in exc.errors():
        path = format_loc(tuple(err["loc"]))
        kind = err["type"]
        if kind == "value_error":
            message = str(err["msg"]).removeprefix("Value error, ")
        elif kind in _MESSAGES:
            ctx = {k: _bound(v) for k, v in (err.get("ctx") or {}).items()}
            message = _MESSAGES[kind].format(**ctx)
        else:
            message = str(err["msg"]).replace("Input should be", "must be")
        given = err.get("input")
        if "got " not in message and kind not in ("missing", "extra_forbidden") and not isinstance(given, (dict, list)):
            message += f" (got {show_value(given)})"
        line = f"{path}: {message}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def _bound(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def show_value(value: Any) -> str:
    """Return `value` as a message shows what was given: strings quoted, anything longer than 60 characters cut."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
