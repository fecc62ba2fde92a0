"""The sweep spec: Pydantic v2 models loaded from YAML.

A spec says which trials to run (trainer, factors, design, seeds), for how long (budget), how to judge them
(objective, pruning) and where (resources, cluster). Everything is checked here, at load time, so that a bad spec
is refused before anything is launched. `load_spec` is the one entry point; its errors are `SpecError`s with one
line per problem: `<file>: <field path>: <what is allowed> (got <value>)`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

from orchestrator.collapse import CollapseConfig
from orchestrator.errors import SpecError

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


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
# A Hydra override key: dotted identifiers, optionally prefixed by `+` or `++` (add / force-add).
OVERRIDE_KEY_RE = re.compile(r"^(\+{1,2})?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# verl's kl_loss_type values (core_algos.kl_penalty): k1 = kl, k2 = mse, k3 = low_var_kl.
KlLossType = Literal["low_var_kl", "kl", "mse", "abs", "full", "k1", "k2", "k3"]
Scalar = Union[bool, int, float, str, None]
OverrideValue = Union[Scalar, list[Any], dict[str, Any]]

# Every seed a verl run has (notes/verl.md): a trial's seed sets all of them.
SEED_KEYS = (
    "data.seed",
    "actor_rollout_ref.rollout.seed",
    "actor_rollout_ref.actor.data_loader_seed",
    "actor_rollout_ref.actor.fsdp_config.seed",
)
# The trainer keys the budget sets, and the budget field that sets each.
BUDGET_KEYS = {
    "trainer.total_training_steps": "max_steps",
    "trainer.total_epochs": "max_steps",
    "trainer.test_freq": "eval_every",
    "trainer.save_freq": "save_every",
}
# The typed factor kinds, by their name in `factors:`.
TYPED_FACTORS = ("lr_schedule", "kl", "entropy_coeff", "rollout_n")


class _Strict(BaseModel):
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


# --------------------------------------------------------------------------------------------------- factor levels


class LrSchedule(_Strict):
    """One level of the `lr_schedule` factor: verl's FSDP schedules (constant or cosine, both with warmup)."""

    type: Literal["constant", "cosine"]
    lr: float = Field(gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1)
    num_cycles: float = Field(default=0.5, gt=0)
    label: PlainName | None = None

    @model_validator(mode="after")
    def _cosine_only_fields(self) -> LrSchedule:
        if self.type == "constant" and (self.min_lr_ratio != 0.0 or self.num_cycles != 0.5):
            raise ValueError("`min_lr_ratio` and `num_cycles` apply only to `type: cosine`")
        return self

    def overrides(self) -> dict[str, Any]:
        """Return the verl overrides this level sets."""
        optim = "actor_rollout_ref.actor.optim"
        out: dict[str, Any] = {
            f"{optim}.lr": self.lr,
            f"{optim}.lr_scheduler_type": self.type,
            f"{optim}.lr_warmup_steps": self.warmup_steps,
        }
        if self.type == "cosine":
            out[f"{optim}.min_lr_ratio"] = self.min_lr_ratio
            out[f"{optim}.num_cycles"] = self.num_cycles
        return out

    def short(self) -> str:
        """Return the shortest label: `const` or `cos`."""
        return "const" if self.type == "constant" else "cos"

    def detailed(self) -> str:
        """Return a label that tells apart levels of the same type."""
        text = f"{self.short()}{_num(self.lr)}"
        if self.warmup_steps:
            text += f"w{self.warmup_steps}"
        if self.type == "cosine" and self.min_lr_ratio:
            text += f"m{_num(self.min_lr_ratio)}"
        return text


class KlLoss(_Strict):
    """One level of the `kl` factor: verl's KL loss to the reference policy, on or off.

    A bare number is accepted as shorthand: `0` is off, `0.01` is on with that coefficient (low_var_kl).
    """

    use_kl_loss: bool
    coef: float | None = None
    type: KlLossType = "low_var_kl"
    label: PlainName | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("a KL level is `{use_kl_loss: false}`, `{use_kl_loss: true, coef: 0.01}` or a number")
        if isinstance(data, (int, float)):
            return {"use_kl_loss": data != 0, "coef": data} if data != 0 else {"use_kl_loss": False}
        return data

    @field_validator("coef")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError(f"must be > 0 (got {value})")
        return value

    @model_validator(mode="after")
    def _coef_iff_on(self) -> KlLoss:
        if self.use_kl_loss and self.coef is None:
            raise ValueError("`coef` is required when `use_kl_loss` is true")
        if not self.use_kl_loss and self.coef is not None:
            raise ValueError("`coef` applies only when `use_kl_loss` is true")
        return self

    def overrides(self) -> dict[str, Any]:
        """Return the verl overrides this level sets."""
        actor = "actor_rollout_ref.actor"
        if not self.use_kl_loss:
            return {f"{actor}.use_kl_loss": False}
        return {f"{actor}.use_kl_loss": True, f"{actor}.kl_loss_coef": self.coef, f"{actor}.kl_loss_type": self.type}

    def short(self) -> str:
        """Return the shortest label: `0` when off, else the coefficient."""
        return "0" if not self.use_kl_loss else _num(self.coef or 0.0)

    def detailed(self) -> str:
        """Return a label that tells apart levels with the same coefficient."""
        return self.short() if not self.use_kl_loss else f"{self.short()}{self.type}"


NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
GroupSize = Annotated[int, Field(ge=2, strict=True)]


# ---------------------------------------------------------------------------------------------------- sections


class TrainerSpec(_Strict):
    """Which trainer runs the trials, from which base config, with which fixed overrides."""

    backend: Literal["verl", "mini"]
    base: Path | None = None
    overrides: dict[str, OverrideValue] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _override_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            _check_override_key(key)
        return value


class Design(_Strict):
    """How factor levels combine into points: full grid, one factor at a time around a baseline, or a list."""

    type: Literal["grid", "one_at_a_time", "explicit"] = "grid"
    baseline: dict[str, Any] | None = None
    points: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _fields_per_type(self) -> Design:
        if self.type != "one_at_a_time" and self.baseline is not None:
            raise ValueError(f"`baseline` applies only to `type: one_at_a_time` (got type {self.type})")
        if self.type == "explicit" and not self.points:
            raise ValueError("`type: explicit` needs a non-empty `points` list")
        if self.type != "explicit" and self.points is not None:
            raise ValueError(f"`points` applies only to `type: explicit` (got type {self.type})")
        return self


class Budget(_Strict):
    """How long each trial trains, and how often it is evaluated and checkpointed (in training steps)."""

    max_steps: int = Field(ge=1)
    eval_every: int = Field(ge=1)
    save_every: int = Field(ge=1)
    hours_per_trial: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _save_divides_eval(self) -> Budget:
        if self.eval_every % self.save_every != 0:
            raise ValueError(
                f"`save_every` must divide `eval_every` so that every eval step has a checkpoint "
                f"(got save_every={self.save_every}, eval_every={self.eval_every})"
            )
        if self.eval_every > self.max_steps:
            raise ValueError(
                f"`eval_every` must be at most `max_steps` (got eval_every={self.eval_every}, "
                f"max_steps={self.max_steps})"
            )
        return self


class Objective(_Strict):
    """The metric trials are judged by. `auto`: the first `val-core/<source>/<var>/mean@N` the trainer logs."""

    metric: str = "auto"
    mode: Literal["max", "min"] = "max"


class Asha(_Strict):
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


class Pruning(_Strict):
    """Pruning across trials (ASHA, off unless given) and within a trial (collapse rules, on by default)."""

    asha: Asha | None = None
    collapse: CollapseConfig | None = Field(default_factory=CollapseConfig)


class Resources(_Strict):
    """What one trial needs: GPUs per node, CPUs per node, nodes."""

    gpus: int = Field(default=0, ge=0)
    cpus: float = Field(default=1.0, gt=0)
    nodes: int = Field(default=1, ge=1)


class Execution(_Strict):
    """How failures are retried and how many trials run at once."""

    max_failures: int = Field(default=2, ge=0)
    max_concurrent_trials: int | None = Field(default=None, ge=1)


_SLURM_VALUE_RE = re.compile(r"^[A-Za-z0-9._,:@%+=/-]{1,128}$")
_SLURM_TIME_RE = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")
_SBATCH_OPTION_RE = re.compile(r"^--[a-z][a-z0-9-]*=[A-Za-z0-9._,:@%+=/-]+$")
# Options ablate sets in every trial job itself (or that would break the job's contract with the launcher).
_SBATCH_OWN_OPTIONS = (
    "job-name", "chdir", "output", "error", "input", "nodes", "ntasks", "ntasks-per-node", "cpus-per-task",
    "gpus", "gpus-per-node", "gpus-per-task", "gres", "time", "partition", "account", "qos", "constraint",
    "requeue", "no-requeue", "array", "wrap", "parsable", "export", "export-file", "test-only", "dependency",
    "wait", "hold", "batch", "kill-on-invalid-dep",
)  # fmt: skip


class Slurm(_Strict):
    """Where Slurm runs each trial: one sbatch job per trial attempt.

    `gpus_per_node` and `nodes` are the spec's `resources.gpus` and `resources.nodes`, accepted here too (the
    spec refuses the two places disagreeing). `requeue`: resubmit a job the cluster ended (preempted, time limit,
    node failure, cancelled outside ablate) so that it resumes from its latest checkpoint, counted against
    `execution.max_failures`; false ends such a trial as failed.
    """

    gpus_per_node: int | None = Field(default=None, ge=0)
    nodes: int | None = Field(default=None, ge=1)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "24:00:00"
    constraint: str | None = None
    extra_sbatch: list[str] = Field(default_factory=list)
    max_jobs: int | None = Field(default=None, ge=1)
    requeue: bool = True

    @field_validator("partition", "account", "qos", "constraint")
    @classmethod
    def _plain_value(cls, value: str | None) -> str | None:
        if value is not None and not _SLURM_VALUE_RE.match(value):
            raise ValueError(f"must match {_SLURM_VALUE_RE.pattern} (got {value!r})")
        return value

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: str) -> str:
        if not _SLURM_TIME_RE.match(value):
            raise ValueError(f"must be a Slurm time such as 04:00:00 or 1-12:00:00 (got {value!r})")
        return value

    @field_validator("extra_sbatch")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        for option in value:
            if not _SBATCH_OPTION_RE.match(option):
                raise ValueError(f"each entry must be one `--key=value` sbatch option (got {option!r})")
            key = option[2:].split("=", 1)[0]
            if key in _SBATCH_OWN_OPTIONS:
                raise ValueError(
                    f"`--{key}` is set by ablate itself (use resources, time, partition, account, qos or "
                    f"constraint) (got {option!r})"
                )
        return value


class SlurmCluster(_Strict):
    """`cluster: {slurm: {...}}`."""

    slurm: Slurm


class Wandb(_Strict):
    """Weights & Biases logging of each trial (offline by default: no network needed)."""

    project: str
    entity: str | None = None
    mode: Literal["offline", "online", "disabled"] = "offline"


class Tracking(_Strict):
    """Experiment trackers each trial logs to, besides ablate's own store."""

    wandb: Wandb | None = None


class SearchParam(_Strict):
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
            return "one of " + ", ".join(_num_or_str(c) for c in self.choices)
        kind = " int" if self.type == "int" else ""
        return f"[{_num(self.low or 0)}, {_num(self.high or 0)}]{kind}{' log' if self.log else ''}"


class Search(_Strict):
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
        owners: dict[str, str] = {key: "the seeds" for key in SEED_KEYS}
        owners.update({key: f"budget.{field}" for key, field in BUDGET_KEYS.items()})
        for key in value:
            _check_override_key(key)
            if key.lstrip("+") in owners:
                raise ValueError(f"`{key}` is set by {owners[key.lstrip('+')]}; it cannot be searched")
        return value


# -------------------------------------------------------------------------------------------------------- spec


class SweepSpec(_Strict):
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
                _check_override_key(str(key))
        # Validate every factor's levels at once, so that each error keeps its path (factors.kl[1].coef).
        shape = TypedDict("Factors", {k: _level_list_type(k) for k in value})  # type: ignore[misc]
        parsed = TypeAdapter(shape).validate_python(value)
        for key, levels in parsed.items():
            _check_distinct(key, levels)
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
            raise ValueError(f"{allowed} (got {_show(value)})")
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
        raise ValueError(f"must be `local` or a mapping `slurm: {{partition: ..., time: ...}}` (got {_show(value)})")

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
        owners: dict[str, str] = {key: "the seeds" for key in SEED_KEYS}
        owners.update({key: f"budget.{field}" for key, field in BUDGET_KEYS.items()})
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
            if _same_level(name, candidate, level):
                return i
        labels = ", ".join(level_label(name, lv, levels) for lv in levels)
        raise ValueError(f"{where}.{name}: {level!r} is not one of its levels ({labels})")

    def level_index(self, name: str, level: Any) -> int:
        """Return the index of `level` among factor `name`'s levels (by value or label)."""
        return self._resolve_level(name, level, "level")


# ------------------------------------------------------------------------------------------------- level helpers


def _level_list_type(name: str) -> Any:
    item: Any
    if name == "lr_schedule":
        item = LrSchedule
    elif name == "kl":
        item = KlLoss
    elif name == "entropy_coeff":
        item = NonNegFloat
    elif name == "rollout_n":
        item = GroupSize
    else:
        item = Scalar
    return Annotated[list[item], Field(min_length=1)]


def _level_key(level: Any) -> Any:
    if isinstance(level, BaseModel):
        return tuple(sorted((k, v) for k, v in level.model_dump().items() if k != "label"))
    return (type(level).__name__ if isinstance(level, bool) else "v", level)


def _check_distinct(name: str, levels: list[Any]) -> None:
    seen: dict[Any, int] = {}
    for i, level in enumerate(levels):
        key = _level_key(level)
        if key in seen:
            raise ValueError(f"`{name}` has duplicate levels at [{seen[key]}] and [{i}] (got {level_value(level)})")
        seen[key] = i


def _same_level(name: str, candidate: Any, given: Any) -> bool:
    if isinstance(candidate, BaseModel):
        if isinstance(given, str) and given in (candidate.short(), candidate.detailed(), candidate.label):
            return True
        try:
            parsed = type(candidate).model_validate(given)
        except ValidationError:
            return False
        return _level_key(parsed) == _level_key(candidate)
    if isinstance(given, str) and not isinstance(candidate, str) and given == _num_or_str(candidate):
        return True
    return _level_key(candidate) == _level_key(given) or (
        isinstance(candidate, float) and isinstance(given, int) and not isinstance(given, bool) and candidate == given
    )


def level_label(name: str, level: Any, levels: list[Any]) -> str:
    """Return a short readable label for `level`, unique among `levels` of the same factor."""
    if isinstance(level, BaseModel):
        if level.label:  # type: ignore[attr-defined]
            return str(level.label)  # type: ignore[attr-defined]
        shorts = [lv.short() for lv in levels]
        return level.short() if shorts.count(level.short()) == 1 else level.detailed()  # type: ignore[attr-defined]
    return _num_or_str(level)


def level_overrides(name: str, level: Any) -> dict[str, Any]:
    """Return the trainer overrides one factor level sets."""
    if isinstance(level, (LrSchedule, KlLoss)):
        return level.overrides()
    if name == "entropy_coeff":
        return {"actor_rollout_ref.actor.entropy_coeff": level}
    if name == "rollout_n":
        return {"actor_rollout_ref.rollout.n": level}
    return {name: level}


def level_value(level: Any) -> Any:
    """Return a JSON-ready form of a level (a dict for typed levels)."""
    if isinstance(level, BaseModel):
        return level.model_dump(exclude_none=True, exclude={"label"})
    return level


def _num(value: float) -> str:
    return format(value, "g")


def _num_or_str(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return _num(value)
    return "null" if value is None else str(value)


def _check_override_key(key: str) -> None:
    if not OVERRIDE_KEY_RE.match(key):
        raise ValueError(f"`{key}` is not a dotted override key (such as actor_rollout_ref.actor.entropy_coeff)")


# ------------------------------------------------------------------------------------------------------ loading


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads `1e-6` as a number (YAML 1.1 wants `1.0e-6`; people write `1e-6`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> Any:
    """Return the YAML document in `path` (numbers like `1e-6` read as floats); raise `SpecError` if malformed."""
    try:
        return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: malformed YAML: {where}{problem}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a text file ({exc.reason})") from None


def load_spec(path: str | Path) -> SweepSpec:
    """Load and validate a sweep spec from a YAML file.

    Relative paths inside the spec (trainer.base) are resolved against the spec file's folder.

    Raises:
        SpecError: one line per problem, each naming the file, the field path, what is allowed and what was given.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a YAML mapping with name, trainer, factors, budget (got {type(data).__name__})")
    return parse_spec(data, source=str(path), base_dir=path.parent)


def parse_spec(
    data: dict[str, Any], *, source: str = "<spec>", base_dir: Path | None = None, resolve_base: bool = True
) -> SweepSpec:
    """Validate a spec given as a mapping; `base_dir` resolves relative paths. Raises `SpecError`.

    `resolve_base=False` leaves `trainer.base` as written (for reading back a spec whose base is not needed).
    """
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError("\n".join(f"{source}: {line}" for line in format_errors(exc))) from None
    if spec.trainer.base is not None and resolve_base:
        base = spec.trainer.base
        if not base.is_absolute():
            base = ((base_dir or Path.cwd()) / base).resolve()
        if not base.is_file():
            raise SpecError(f"{source}: trainer.base: no such file {base}")
        trainer = spec.trainer.model_copy(update={"base": base})
        spec = spec.model_copy(update={"trainer": trainer})
    return spec


def load_base_overrides(path: Path) -> dict[str, Any]:
    """Return the flat `dotted.key: value` overrides of a base config file (nested mappings are flattened)."""
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a base config is a mapping of override keys to values")
    flat: dict[str, Any] = {}
    _flatten("", data, flat)
    for key in flat:
        try:
            _check_override_key(key)
        except ValueError as exc:
            raise SpecError(f"{path}: {exc}") from None
    return flat


def _flatten(prefix: str, node: dict[str, Any], out: dict[str, Any]) -> None:
    for key, value in node.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(f"{full}.", value, out)
        else:
            out[full] = value


# -------------------------------------------------------------------------------------------- error formatting


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
            message += f" (got {_show(given)})"
        line = f"{path}: {message}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def _bound(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _show(value: Any) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
