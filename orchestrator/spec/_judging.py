"""How trials are judged: the objective, ASHA across trials, and the collapse rules within each trial."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from orchestrator.collapse import CollapseConfig
from orchestrator.spec._base import Strict


class Objective(Strict):
    """The metric trials are judged by. `auto`: the first `val-core/<source>/<var>/mean@N` the trainer logs."""

    metric: str = "auto"
    mode: Literal["max", "min"] = "max"


class Asha(Strict):
    """ASHA across trials (Ray Tune's AsyncHyperBandScheduler), on a noise-robust signal of the objective."""

    grace_steps: int = Field(default=20, ge=1)
    reduction_factor: float = Field(default=3.0, gt=1)
    brackets: int = Field(default=1, ge=1)
    signal: Literal["best", "ema"] = "best"
    ema_alpha: float = Field(default=0.5, gt=0, le=1)
    by: Literal["trial", "seed_mean"] = "trial"
    """`trial`: Tune's ASHA on each trial. `seed_mean`: each configuration on the mean over its seeds at each rung;
    a dominated configuration has all its seeds stopped together (`orchestrator.pruners.SeedMeanHalving`)."""

    @model_validator(mode="after")
    def _one_bracket_by_seed_mean(self) -> Asha:
        if self.by == "seed_mean" and self.brackets != 1:
            raise ValueError(f"`brackets` must be 1 with `by: seed_mean` (got {self.brackets})")
        return self


class Pruning(Strict):
    """Pruning across trials (ASHA, off unless given) and within a trial (collapse rules, on by default)."""

    asha: Asha | None = None
    collapse: CollapseConfig | None = Field(default_factory=CollapseConfig)
