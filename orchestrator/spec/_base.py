"""What every spec model shares: the strict base model, plain names, scalar values and how numbers are shown."""

from __future__ import annotations

import re
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
Scalar = Union[bool, int, float, str, None]


def check_plain_name(value: str) -> str:
    """Return `value` if it can name a folder as it is (no separator, not `.` or `..`), else raise ValueError.

    Sweep names and level labels become paths (`runs/<name>`, `trials/<trial>`); `..` would write into the folder
    above, `.` into the working directory.
    """
    if not NAME_RE.match(value):
        raise ValueError(f"must be 1-64 characters of A-Z a-z 0-9 . _ - (got {value!r})")
    if not value.strip("."):
        raise ValueError(f"must be a plain folder name, not only dots: it becomes a path (got {value!r})")
    return value


PlainName = Annotated[str, AfterValidator(check_plain_name)]


class Strict(BaseModel):
    """Base of every spec model: frozen, unknown keys refused with the list of allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        allowed = [f.alias or name for name, f in cls.model_fields.items()]
        unknown = [k for k in data if k not in allowed]
        if unknown:
            raise ValueError(f"unknown key `{unknown[0]}`; allowed: {', '.join(allowed)}")
        return data


def num_text(value: float) -> str:
    """Return `value` in its shortest form (`0.001`, `1e-06`), as labels and descriptions show numbers."""
    return format(value, "g")


def scalar_text(value: Any) -> str:
    """Return a scalar as YAML writes it: `true`, `null`, numbers in their shortest form, strings as they are."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return num_text(value)
    return "null" if value is None else str(value)
