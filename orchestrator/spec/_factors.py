"""Factors and their levels: the typed level kinds and their shorthands, labels and overrides; the design.

A factor is one of `TYPED_FACTORS` (levels checked and turned into verl overrides here) or a dotted trainer
override key (levels are plain values). The design says how the levels combine into points.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from orchestrator.minigrpo.corr_spec import parse_is_threshold
from orchestrator.spec._base import PlainName, Scalar, Strict, num_text, scalar_text

# The typed factor kinds, by their name in `factors:`.
TYPED_FACTORS = ("lr_schedule", "kl", "entropy_coeff", "rollout_n", "rollout_dtype", "rollout_correction")
# verl's kl_loss_type values (core_algos.kl_penalty): k1 = kl, k2 = mse, k3 = low_var_kl.
KlLossType = Literal["low_var_kl", "kl", "mse", "abs", "full", "k1", "k2", "k3"]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
GroupSize = Annotated[int, Field(ge=2, strict=True)]


class LrSchedule(Strict):
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
        text = f"{self.short()}{num_text(self.lr)}"
        if self.warmup_steps:
            text += f"w{self.warmup_steps}"
        if self.type == "cosine" and self.min_lr_ratio:
            text += f"m{num_text(self.min_lr_ratio)}"
        return text


class KlLoss(Strict):
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
        return "0" if not self.use_kl_loss else num_text(self.coef or 0.0)

    def detailed(self) -> str:
        """Return a label that tells apart levels with the same coefficient."""
        return self.short() if not self.use_kl_loss else f"{self.short()}{self.type}"


_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
_CORRECTION = "algorithm.rollout_correction"


class RolloutDtype(Strict):
    """One level of the `rollout_dtype` factor: the precision the rollout engine samples in (verl's
    `actor_rollout_ref.rollout.dtype`; the miniature rounds its sampler's weights to it).

    Given as `bfloat16`, `float16` or `float32` (or `bf16`, `fp16`, `fp32`).
    """

    dtype: Literal["bfloat16", "float16", "float32"]
    label: PlainName | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            full = {short: name for name, short in _DTYPES.items()}.get(data, data)
            if full not in _DTYPES:
                raise ValueError(f"must be one of {', '.join(_DTYPES)} (or {', '.join(_DTYPES.values())}) "
                                 f"(got {data!r})")
            return {"dtype": full}
        return data

    def overrides(self) -> dict[str, Any]:
        """Return the verl overrides this level sets."""
        return {"actor_rollout_ref.rollout.dtype": self.dtype}

    def short(self) -> str:
        """Return the label: `bf16`, `fp16` or `fp32`."""
        return _DTYPES[self.dtype]

    def detailed(self) -> str:
        """Return the same label (a dtype is its own detail)."""
        return self.short()


class RolloutCorrection(Strict):
    """One level of the `rollout_correction` factor: verl's importance sampling between the trainer's and the
    sampler's token probabilities (`algorithm.rollout_correction.rollout_is` and `rollout_is_threshold`).

    `null` (label `none`) is off (the mismatch is measured, not corrected); `token` or `sequence` weights each token, or each
    sequence by the product of its tokens' ratios, truncated at `threshold` (2.0 by default, verl's; a
    `"lower_upper"` string zeroes weights outside the bounds instead). Every level keeps the sampler's log-probs
    (`actor_rollout_ref.rollout.calculate_log_probs: true`), so every level logs the mismatch.
    """

    level: Literal["token", "sequence"] | None = None
    threshold: float | str | None = None
    label: PlainName | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data is None or isinstance(data, str):
            return {"level": data}
        return data

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float | str | None) -> float | str | None:
        if value is not None:
            parse_is_threshold(value)  # verl's own rules, in verl's words
        return value

    @model_validator(mode="after")
    def _default_threshold(self) -> RolloutCorrection:
        if self.level is None and self.threshold is not None:
            raise ValueError("`threshold` applies only with `level: token` or `level: sequence`")
        if self.level is not None and self.threshold is None:
            object.__setattr__(self, "threshold", 2.0)
        return self

    def overrides(self) -> dict[str, Any]:
        """Return the verl overrides this level sets."""
        out: dict[str, Any] = {"actor_rollout_ref.rollout.calculate_log_probs": True,
                               f"{_CORRECTION}.rollout_is": self.level}
        if self.level is not None:
            out[f"{_CORRECTION}.rollout_is_threshold"] = self.threshold
        return out

    def short(self) -> str:
        """Return the shortest label: `none`, `token` or `seq`."""
        return {None: "none", "token": "token", "sequence": "seq"}[self.level]

    def detailed(self) -> str:
        """Return a label that tells apart levels with different thresholds."""
        if self.level is None:
            return self.short()
        threshold = num_text(self.threshold) if isinstance(self.threshold, float) else str(self.threshold)
        return f"{self.short()}{threshold}"


class Design(Strict):
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


def level_list_type(name: str) -> Any:
    """Return the type of factor `name`'s list of levels: typed levels for a typed factor, else scalars."""
    item: Any
    if name == "lr_schedule":
        item = LrSchedule
    elif name == "kl":
        item = KlLoss
    elif name == "entropy_coeff":
        item = NonNegFloat
    elif name == "rollout_n":
        item = GroupSize
    elif name == "rollout_dtype":
        item = RolloutDtype
    elif name == "rollout_correction":
        item = RolloutCorrection
    else:
        item = Scalar
    return Annotated[list[item], Field(min_length=1)]


def _level_key(level: Any) -> Any:
    if isinstance(level, BaseModel):
        return tuple(sorted((k, v) for k, v in level.model_dump().items() if k != "label"))
    return (type(level).__name__ if isinstance(level, bool) else "v", level)


def check_distinct(name: str, levels: list[Any]) -> None:
    """Raise ValueError if two of factor `name`'s levels are the same (labels aside)."""
    seen: dict[Any, int] = {}
    for i, level in enumerate(levels):
        key = _level_key(level)
        if key in seen:
            raise ValueError(f"`{name}` has duplicate levels at [{seen[key]}] and [{i}] (got {level_value(level)})")
        seen[key] = i


def same_level(name: str, candidate: Any, given: Any) -> bool:
    """Return whether `given` (a value, a label or a typed level's mapping) names the level `candidate`."""
    if isinstance(candidate, BaseModel):
        if isinstance(given, str) and given in (candidate.short(), candidate.detailed(), candidate.label):
            return True
        try:
            parsed = type(candidate).model_validate(given)
        except ValidationError:
            return False
        return _level_key(parsed) == _level_key(candidate)
    if isinstance(given, str) and not isinstance(candidate, str) and given == scalar_text(candidate):
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
    return scalar_text(level)


def level_overrides(name: str, level: Any) -> dict[str, Any]:
    """Return the trainer overrides one factor level sets."""
    if isinstance(level, (LrSchedule, KlLoss, RolloutDtype, RolloutCorrection)):
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
