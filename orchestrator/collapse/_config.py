"""`CollapseConfig`, the spec's `pruning.collapse` section, and `build_rules`, which turns it into rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from orchestrator.collapse import _validation as v
from orchestrator.collapse._base import Mode, Rule
from orchestrator.collapse._dead import DeadRule
from orchestrator.collapse._entropy import DEFAULT_METRICS as ENTROPY_METRICS
from orchestrator.collapse._entropy import EntropyRule
from orchestrator.collapse._length_collapse import LengthCollapseRule
from orchestrator.collapse._noise import DEFAULT_NOISE_Z, DEFAULT_UNKNOWN_DROP, EvalNoise
from orchestrator.collapse._non_finite import DEFAULT_METRICS as NON_FINITE_METRICS
from orchestrator.collapse._non_finite import NonFiniteRule
from orchestrator.collapse._score_drop import ScoreDropRule
from orchestrator.collapse._score_slide import DEFAULT_SLIDE_Z, ScoreSlideRule


class _RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


class NonFiniteConfig(_RuleConfig):
    """`NonFiniteRule`: stop at once on NaN or inf."""

    metrics: list[str] = Field(default_factory=lambda: list(NON_FINITE_METRICS))
    include_objective: bool = True

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return [v.check_metric(str(info.field_name), metric) for metric in value]


class ScoreDropConfig(_RuleConfig):
    """`ScoreDropRule`: the objective below (1 - drop) x best, and beyond the noise, for n_evals evaluations in a row;
    or one evaluation that lost `severe_drop` of the gain, `severe_z` standard errors below the best, at once."""

    drop: float = 0.25
    n_evals: int = 2
    min_delta: float = 0.0
    severe_drop: float = 0.5
    severe_z: float = 4.5

    @field_validator("severe_drop")
    @classmethod
    def _severe_drop(cls, value: float, info: ValidationInfo) -> float:
        return v.check_fraction(str(info.field_name), value)

    @field_validator("severe_z")
    @classmethod
    def _severe_z(cls, value: float, info: ValidationInfo) -> float:
        return v.check_non_negative(str(info.field_name), value)

    @field_validator("drop")
    @classmethod
    def _drop(cls, value: float, info: ValidationInfo) -> float:
        return v.check_open_unit(str(info.field_name), value)

    @field_validator("n_evals")
    @classmethod
    def _n_evals(cls, value: int, info: ValidationInfo) -> int:
        return v.check_at_least(str(info.field_name), value, 1)

    @field_validator("min_delta")
    @classmethod
    def _min_delta(cls, value: float, info: ValidationInfo) -> float:
        return v.check_non_negative(str(info.field_name), value)


class ScoreSlideConfig(_RuleConfig):
    """`ScoreSlideRule`: the mean of the last `window` evaluations lost `drop` of the best earlier window mean's
    gain, `z` standard errors of the difference below it."""

    window: int = 3
    drop: float = 0.15
    z: float = DEFAULT_SLIDE_Z

    @field_validator("window")
    @classmethod
    def _window(cls, value: int, info: ValidationInfo) -> int:
        return v.check_at_least(str(info.field_name), value, 1)

    @field_validator("drop")
    @classmethod
    def _drop(cls, value: float, info: ValidationInfo) -> float:
        return v.check_open_unit(str(info.field_name), value)

    @field_validator("z")
    @classmethod
    def _z(cls, value: float, info: ValidationInfo) -> float:
        return v.check_non_negative(str(info.field_name), value)


class DeadConfig(_RuleConfig):
    """`DeadRule`: grad norm at most `threshold` and the score below half its best for n_steps steps."""

    grad_norm_metric: str = "actor/grad_norm"
    threshold: float = 1e-3
    drop: float = 0.5
    n_steps: int = 3

    @field_validator("grad_norm_metric")
    @classmethod
    def _metric(cls, value: str, info: ValidationInfo) -> str:
        return v.check_metric(str(info.field_name), value)

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float, info: ValidationInfo) -> float:
        return v.check_positive(str(info.field_name), value)

    @field_validator("drop")
    @classmethod
    def _drop(cls, value: float, info: ValidationInfo) -> float:
        return v.check_open_unit(str(info.field_name), value)

    @field_validator("n_steps")
    @classmethod
    def _n_steps(cls, value: int, info: ValidationInfo) -> int:
        return v.check_at_least(str(info.field_name), value, 1)


class LengthCollapseConfig(_RuleConfig):
    """`LengthCollapseRule`: response length below ratio x its running maximum, with a dropped score."""

    length_metric: str = "response_length/mean"
    ratio: float = 0.5
    drop: float = 0.25
    n_steps: int = 2

    @field_validator("length_metric")
    @classmethod
    def _metric(cls, value: str, info: ValidationInfo) -> str:
        return v.check_metric(str(info.field_name), value)

    @field_validator("ratio", "drop")
    @classmethod
    def _fraction(cls, value: float, info: ValidationInfo) -> float:
        return v.check_open_unit(str(info.field_name), value)

    @field_validator("n_steps")
    @classmethod
    def _n_steps(cls, value: int, info: ValidationInfo) -> int:
        return v.check_at_least(str(info.field_name), value, 1)


class EntropyConfig(_RuleConfig):
    """`EntropyRule`: entropy collapse or explosion against its early level; stops only with a dropped score."""

    entropy_metrics: list[str] = Field(default_factory=lambda: list(ENTROPY_METRICS))
    window: int = 5
    collapse_ratio: float = 0.05
    explosion_ratio: float = 3.0
    drop: float = 0.25
    n_steps: int = 3

    @field_validator("entropy_metrics")
    @classmethod
    def _metrics(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value:
            raise ValueError(f"`{info.field_name}` must name at least 1 metric but got 0.")
        return [v.check_metric(str(info.field_name), metric) for metric in value]

    @field_validator("window", "n_steps")
    @classmethod
    def _count(cls, value: int, info: ValidationInfo) -> int:
        return v.check_at_least(str(info.field_name), value, 1)

    @field_validator("collapse_ratio", "drop")
    @classmethod
    def _fraction(cls, value: float, info: ValidationInfo) -> float:
        return v.check_open_unit(str(info.field_name), value)

    @field_validator("explosion_ratio")
    @classmethod
    def _explosion(cls, value: float, info: ValidationInfo) -> float:
        return v.check_above_one(str(info.field_name), value)


class CollapseConfig(BaseModel):
    """The collapse rules of a sweep (the spec's `pruning.collapse`), each with `enabled` and its thresholds.

    Attributes:
        grace_steps: Steps below this are not judged by the score, length and entropy rules (they still set the
            best score and the running maxima). NaN and the dead state are judged from the start.
        baseline: The origin from which a score's gain is measured: a number (0 by default, so that a drop of
            `d` means below `(1 - d) x best` for positive scores), or `"first"` for the run's first evaluation.
            Set it to the score's worst value when scores can be negative.
        noise_z: How many standard errors of the evaluation noise a score must fall, as well as its threshold,
            before any rule counts it as dropped (`orchestrator.collapse._noise`); 0 judges by thresholds alone.
        unknown_noise_drop: While the noise is not known yet (no size, too few evaluations for the run's own
            spread), the fraction of the gain a score must lose, as well as its threshold, to count as dropped.
        non_finite, score_drop, score_slide, dead, length_collapse, entropy: One section per rule.

    Example:
        >>> config = CollapseConfig.model_validate({"score_drop": {"drop": 0.3}, "entropy": {"enabled": False}})
        >>> [rule.name for rule in build_rules(config, "val-core/openai/gsm8k/acc/mean@1", "max")]
        ['non_finite', 'dead', 'length_collapse', 'score_drop', 'score_slide']
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    grace_steps: int = 0
    baseline: float | Literal["first"] = 0.0
    noise_z: float = DEFAULT_NOISE_Z
    unknown_noise_drop: float = DEFAULT_UNKNOWN_DROP
    non_finite: NonFiniteConfig = Field(default_factory=NonFiniteConfig)
    score_drop: ScoreDropConfig = Field(default_factory=ScoreDropConfig)
    score_slide: ScoreSlideConfig = Field(default_factory=ScoreSlideConfig)
    dead: DeadConfig = Field(default_factory=DeadConfig)
    length_collapse: LengthCollapseConfig = Field(default_factory=LengthCollapseConfig)
    entropy: EntropyConfig = Field(default_factory=EntropyConfig)

    @field_validator("grace_steps")
    @classmethod
    def _grace_steps(cls, value: int, info: ValidationInfo) -> int:
        return v.check_at_least(str(info.field_name), value, 0)

    @field_validator("noise_z")
    @classmethod
    def _noise_z(cls, value: float, info: ValidationInfo) -> float:
        return v.check_non_negative(str(info.field_name), value)

    @field_validator("unknown_noise_drop")
    @classmethod
    def _unknown_noise_drop(cls, value: float, info: ValidationInfo) -> float:
        return v.check_fraction(str(info.field_name), value)

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, value: float | str) -> float | str:
        return v.check_baseline(value)


def build_rules(
    config: CollapseConfig, objective: str, mode: Mode, eval_sizes: Mapping[str, int] | None = None
) -> list[Rule]:
    """Return the enabled rules of `config`, judging `objective` in `mode`, against its evaluation noise.

    The order breaks ties in `first_verdict` (the first listed wins): non_finite, dead, length_collapse,
    score_drop, score_slide, entropy, from the most to the least specific diagnosis.

    Args:
        config: The spec's collapse section.
        objective: The metric runs are judged by (e.g. `val-core/openai/gsm8k/acc/mean@1`).
        mode: `max` if a higher objective is better, else `min`.
        eval_sizes: The spec's `objective.eval_sizes` (data source -> problems), for the noise.

    Raises:
        ValueError: If `objective` is empty or `mode` is not `max` or `min`.
    """
    v.check_metric("objective", objective)
    v.check_mode(mode)
    noise = (
        EvalNoise(objective, dict(eval_sizes or {}), config.noise_z, config.unknown_noise_drop)
        if config.noise_z > 0
        else None
    )
    score = {"mode": mode, "baseline": config.baseline, "noise": noise}
    rules: list[Rule] = []
    if config.non_finite.enabled:
        section = config.non_finite
        rules.append(NonFiniteRule(section.metrics, objective if section.include_objective else None))
    if config.dead.enabled:
        d = config.dead
        rules.append(
            DeadRule(
                objective,
                grad_norm_metric=d.grad_norm_metric,
                threshold=d.threshold,
                drop=d.drop,
                n_steps=d.n_steps,
                **score,  # type: ignore[arg-type]
            )
        )
    if config.length_collapse.enabled:
        lc = config.length_collapse
        rules.append(
            LengthCollapseRule(
                objective,
                length_metric=lc.length_metric,
                ratio=lc.ratio,
                drop=lc.drop,
                n_steps=lc.n_steps,
                grace_steps=config.grace_steps,
                **score,  # type: ignore[arg-type]
            )
        )
    if config.score_drop.enabled:
        sd = config.score_drop
        rules.append(
            ScoreDropRule(
                objective,
                drop=sd.drop,
                n_evals=sd.n_evals,
                min_delta=sd.min_delta,
                severe_drop=sd.severe_drop,
                severe_z=sd.severe_z,
                grace_steps=config.grace_steps,
                **score,  # type: ignore[arg-type]
            )
        )
    if config.score_slide.enabled:
        ss = config.score_slide
        rules.append(
            ScoreSlideRule(
                objective,
                window=ss.window,
                drop=ss.drop,
                z=ss.z,
                grace_steps=config.grace_steps,
                **score,  # type: ignore[arg-type]
            )
        )
    if config.entropy.enabled:
        e = config.entropy
        rules.append(
            EntropyRule(
                objective,
                entropy_metrics=e.entropy_metrics,
                window=e.window,
                collapse_ratio=e.collapse_ratio,
                explosion_ratio=e.explosion_ratio,
                drop=e.drop,
                n_steps=e.n_steps,
                grace_steps=config.grace_steps,
                **score,  # type: ignore[arg-type]
            )
        )
    return rules
