"""A follow-up search (`search: {type: optuna}`): its space of trainer overrides and its sample count."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.spec._base import Scalar, Strict, num_text, scalar_text
from orchestrator.spec._trainer import check_override_key, seed_and_budget_keys


class SearchParam(Strict):
    """One dimension of a search space: a range (`low`, `high`, `log`, `type`) or a list of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    type: Literal["float", "int"] = "float"
    choices: list[Scalar] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchParam:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("give either `choices` or a range (`low`, `high`, `log`), not both")
            if not self.choices:
                raise ValueError("`choices` must not be empty")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError(f"`choices` must be distinct (got {self.choices})")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both `low` and `high` (or give `choices`)")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"`low` must be below `high` (got low={self.low:g}, high={self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"`log: true` needs positive bounds (got low={self.low:g})")
        if self.type == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"`type: int` needs integer bounds (got low={self.low:g}, high={self.high:g})")
        return self

    def describe(self) -> str:
        """Return the dimension in one phrase: `[0.0001, 0.01] log` or `one of 2, 4, 8`."""
        if self.choices is not None:
            return "one of " + ", ".join(scalar_text(c) for c in self.choices)
        kind = " int" if self.type == "int" else ""
        return f"[{num_text(self.low or 0)}, {num_text(self.high or 0)}]{kind}{' log' if self.log else ''}"


class Search(Strict):
    """A follow-up search (`type: optuna`): `num_samples` configurations sampled by Optuna's TPE over `space`.

    Every sampled configuration is one trial: the spec's single design point (each factor has one level) with
    the sampled trainer overrides on top, trained on the spec's single seed, with the spec's pruning.
    """

    type: Literal["optuna"]
    num_samples: int = Field(ge=1)
    space: dict[str, SearchParam] = Field(min_length=1)
    seed: int = Field(default=0, ge=0)

    @field_validator("space")
    @classmethod
    def _space_keys(cls, value: dict[str, SearchParam]) -> dict[str, SearchParam]:
        owners = seed_and_budget_keys()
        for key in value:
            check_override_key(key)
            if key.lstrip("+") in owners:
                raise ValueError(f"`{key}` is set by {owners[key.lstrip('+')]}; it cannot be searched")
        return value
