"""How trials are judged: the objective, ASHA across trials, and the collapse rules within each trial."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.collapse import CollapseConfig
from orchestrator.spec._base import Strict
from orchestrator.spec._rescue import Rescue


class Objective(Strict):
    """The metric trials are judged by, and the sizes of the evaluation sets it is measured on.

    `metric: auto` takes the `val-core/<source>/<var>/mean@N` of the largest evaluation set the trainer logs
    (`orchestrator.history.choose_objective`). `eval_sizes` maps a data source, as it appears in verl's metric
    names (`aime24`, `openai/gsm8k`, ...), to the number of problems it has: the collapse rules judge a drop against
    the noise of a set that size (`orchestrator.collapse._noise`).
    """

    metric: str = "auto"
    mode: Literal["max", "min"] = "max"
    eval_sizes: dict[str, int] = Field(default_factory=dict)

    @field_validator("eval_sizes")
    @classmethod
    def _sizes(cls, value: dict[str, int]) -> dict[str, int]:
        for source, size in value.items():
            if not source or "/" in (source[0], source[-1]):
                raise ValueError(f"a data source must be a name like `aime24` or `openai/gsm8k` (got {source!r})")
            if size < 1:
                raise ValueError(f"the size of `{source}` must be at least 1 problem (got {size})")
        return value


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
    rescue: Rescue | None = None
    """Branch a trial a collapse rule stopped, once per remedy, from one of its checkpoints (`orchestrator.rescue`)."""

    @model_validator(mode="after")
    def _rescue_needs_rules(self) -> Pruning:
        if self.rescue is not None and self.collapse is None:
            raise ValueError("`rescue` needs the collapse rules (`collapse`): a branch starts when a rule stops a trial")
        return self
