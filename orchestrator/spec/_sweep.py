"""The whole sweep spec, `SweepSpec`: its sections, and the checks that span more than one of them."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, TypeAdapter, ValidationInfo, field_validator, model_validator
from typing_extensions import TypedDict

from orchestrator.spec._base import PlainName, Strict
from orchestrator.spec._cluster import SlurmCluster
from orchestrator.spec._factors import (
    TYPED_FACTORS,
    Design,
    check_distinct,
    level_label,
    level_list_type,
    level_overrides,
    same_level,
)
from orchestrator.spec._judging import Objective, Pruning
from orchestrator.spec._messages import show_value
from orchestrator.spec._run import Budget, Execution, Resources, Tracking
from orchestrator.spec._search import Search
from orchestrator.spec._trainer import TrainerSpec, check_override_key, seed_and_budget_keys


class SweepSpec(Strict):
    """A whole sweep. Build it with `load_spec` (which resolves paths and reports errors per field)."""

    name: PlainName
    description: str = ""
    trainer: TrainerSpec
    factors: dict[str, list[Any]]
    design: Design = Field(default_factory=Design)
    seeds: Union[int, list[int]] = 1
    budget: Budget
    objective: Objective = Field(default_factory=Objective)
    pruning: Pruning = Field(default_factory=Pruning)
    resources: Resources = Field(default_factory=Resources)
    execution: Execution = Field(default_factory=Execution)
    cluster: Union[Literal["local"], SlurmCluster] = "local"
    tracking: Tracking = Field(default_factory=Tracking)
    search: Search | None = None

    @field_validator("search")
    @classmethod
    def _search_fits(cls, value: Search | None, info: ValidationInfo) -> Search | None:
        if value is None:
            return value
        factors = info.data.get("factors") or {}
        several = [f"`{name}` has {len(levels)}" for name, levels in factors.items() if len(levels) != 1]
        if several:
            raise ValueError(
                "every factor must have exactly one level, the configuration the search varies around "
                f"({', '.join(several)})"
            )
        seeds = info.data.get("seeds", 1)
        n_seeds = seeds if isinstance(seeds, int) else len(seeds)
        if n_seeds != 1:
            raise ValueError(f"`seeds` must be a single seed: each sampled configuration is one trial (got {n_seeds})")
        pruning = info.data.get("pruning")
        if pruning is not None and pruning.rescue is not None:
            raise ValueError("`pruning.rescue` branches the trials of a grid; a search samples its own (remove one of them)")
        if pruning is not None and pruning.asha is not None and pruning.asha.by == "seed_mean":
            raise ValueError("`pruning.asha.by: seed_mean` needs seeds to average; a search runs one per configuration (use `by: trial`)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _slurm_resources(cls, data: Any) -> Any:
        """Take `cluster.slurm.gpus_per_node` / `nodes` as `resources.gpus` / `nodes`, refusing a disagreement."""
        if not isinstance(data, dict) or not isinstance(data.get("cluster"), dict):
            return data
        slurm = data["cluster"].get("slurm")
        resources = data.get("resources", {})
        if not isinstance(slurm, dict) or not isinstance(resources, dict):
            return data
        merged = dict(resources)
        for own, key in (("gpus_per_node", "gpus"), ("nodes", "nodes")):
            if slurm.get(own) is None:
                continue
            if key in resources and resources[key] != slurm[own]:
                raise ValueError(
                    f"cluster.slurm.{own} ({slurm[own]}) and resources.{key} ({resources[key]}) disagree; "
                    "give one of them"
                )
            merged[key] = slurm[own]
        return {**data, "resources": merged}

    @field_validator("factors", mode="before")
    @classmethod
    def _factors(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic reports the type error
        if not value:
            raise ValueError("at least one factor is required")
        for key in value:
            if key not in TYPED_FACTORS and "." not in str(key):
                raise ValueError(
                    f"unknown factor `{key}`; allowed: {', '.join(TYPED_FACTORS)}, "
                    "or a dotted trainer override key such as actor_rollout_ref.actor.clip_ratio_high"
                )
            if key not in TYPED_FACTORS:
                check_override_key(str(key))
        # Validate every factor's levels at once, so that each error keeps its path (factors.kl[1].coef).
        shape = TypedDict("Factors", {k: level_list_type(k) for k in value})  # type: ignore[misc]
        parsed = TypeAdapter(shape).validate_python(value)
        for key, levels in parsed.items():
            check_distinct(key, levels)
        return {k: parsed[k] for k in value}

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        allowed = "must be a count >= 1 or a non-empty list of distinct integers >= 0"
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError(f"{allowed} (got {value})")
            return value
        if not isinstance(value, list) or not value:
            raise ValueError(f"{allowed} (got {show_value(value)})")
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in value):
            raise ValueError(f"{allowed} (got {value})")
        if len(set(value)) != len(value):
            raise ValueError(f"{allowed}; duplicates (got {value})")
        return value

    @field_validator("cluster", mode="before")
    @classmethod
    def _cluster(cls, value: Any) -> Any:
        if value == "local" or isinstance(value, SlurmCluster):
            return value
        if isinstance(value, dict):
            return SlurmCluster.model_validate(value)
        raise ValueError(f"must be `local` or a mapping `slurm: {{partition: ..., time: ...}}` (got {show_value(value)})")

    @model_validator(mode="after")
    def _design_levels(self) -> SweepSpec:
        if self.design.baseline is not None:
            for name, level in self.design.baseline.items():
                self._resolve_level(name, level, "design.baseline")
        for i, point in enumerate(self.design.points or []):
            for name, level in point.items():
                self._resolve_level(name, level, f"design.points[{i}]")
        self._fixed_overrides_do_not_clash()
        if self.trainer.backend == "verl" and self.resources.gpus < 1:
            raise ValueError("`resources.gpus` must be at least 1 for the verl backend (got 0)")
        if self.trainer.backend == "mini" and self.resources.nodes > 1:
            raise ValueError(f"`resources.nodes` must be 1 for the mini backend, a one-process trainer (got {self.resources.nodes})")
        return self

    def _fixed_overrides_do_not_clash(self) -> None:
        """Refuse a fixed override of a key that a factor, the budget or the seeds set (it would be ignored)."""
        owners = seed_and_budget_keys()
        if self.trainer.backend == "verl":
            owners.update({"trainer.n_gpus_per_node": "resources.gpus", "trainer.nnodes": "resources.nodes"})
        for name, levels in self.factors.items():
            for level in levels:
                owners.update({key: f"factors.{name}" for key in level_overrides(name, level)})
        for key in self.trainer.overrides:
            plain = key.lstrip("+")
            if plain in owners:
                raise ValueError(
                    f"trainer.overrides.{key}: this key is set by {owners[plain]}; remove it from trainer.overrides"
                )

    # -------------------------------------------------------------------------------------- helpers for design

    @property
    def seed_list(self) -> list[int]:
        """Return the seeds every point runs with: `seeds: 3` means 1, 2, 3."""
        return list(range(1, self.seeds + 1)) if isinstance(self.seeds, int) else list(self.seeds)

    def _resolve_level(self, name: str, level: Any, where: str) -> int:
        """Return the index of `level` among factor `name`'s levels (by value or label), or raise."""
        if name not in self.factors:
            raise ValueError(f"{where}: unknown factor `{name}`; factors: {', '.join(self.factors)}")
        levels = self.factors[name]
        for i, candidate in enumerate(levels):
            if same_level(name, candidate, level):
                return i
        labels = ", ".join(level_label(name, lv, levels) for lv in levels)
        raise ValueError(f"{where}.{name}: {level!r} is not one of its levels ({labels})")

    def level_index(self, name: str, level: Any) -> int:
        """Return the index of `level` among factor `name`'s levels (by value or label)."""
        return self._resolve_level(name, level, "level")
